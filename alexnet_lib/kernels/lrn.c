/* Local response normalization (Krizhevsky et al. 2012, section 3.3) on a
 * CPU: forward and backward, each in one pass over memory.
 *
 * Built on first use by alexnet_lib/kernels/__init__.py with the system C
 * compiler (plain C, no PyTorch headers) and called through ctypes, which
 * releases the GIL: Python splits the rows between threads. Without a
 * compiler the library's blocked PyTorch kernel runs instead.
 *
 * The input is seen as (R, C, L): R rows, C channels of one group, L
 * positions; element (r, c, l) sits at r*C*L + c*L + l. NCHW tensors have
 * L = H*W; channels_last tensors have L = 1 (channels contiguous).
 *
 * Work goes panel by panel. A panel is `nl` lines of C channels times `u`
 * positions in float32, kept in cache:
 *   L > 1: one line, u = up to PANEL positions of one row;
 *   L = 1: up to PANEL rows as lines, u = 1.
 * Within a line, channel c, position t is at c*u + t, so the channel
 * window is a sum of the same array shifted by multiples of u: every pass
 * is a straight loop the compiler vectorises.
 *
 * Forward:  d = k + alpha * S(a*a),  p = d ** -beta,  b = a * p
 * Backward: gx = g*p - 2*alpha*beta * a * S'(g*p*a/d)
 * S sums the window of channels c-before .. c+after (clipped at the ends),
 * S' the same window with its two sides swapped. The window sums add the
 * terms in ascending channel order, as the PyTorch reference does.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PANEL 64

typedef struct {
    int64_t C, L, n, before, after;
    float alpha, beta, k;
    int bf16; /* 0: float32 data, 1: bfloat16 data (uint16 bits) */
} lrn_opts;

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as PyTorch's float -> bfloat16 does. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Copy n values between memory (float32 or bf16) and a float32 buffer. */
static void to_f32(const void *src, int64_t at, int bf16, int64_t n,
                   float *out) {
    if (bf16) {
        const uint16_t *s = (const uint16_t *)src + at;
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(s[i]);
    } else {
        memcpy(out, (const float *)src + at, n * sizeof(float));
    }
}

static void from_f32(void *dst, int64_t at, int bf16, int64_t n,
                     const float *in) {
    if (bf16) {
        uint16_t *d = (uint16_t *)dst + at;
        for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(in[i]);
    } else {
        memcpy((float *)dst + at, in, n * sizeof(float));
    }
}

/* Channels_last panels: nl lines of C values, end to end in memory from
 * `at`, to and from rows of `plen` floats (lead zeros, the C values,
 * trail zeros). Lines are a dozen or a few dozen values, too short for
 * the compiler to vectorise a bf16 conversion per line, so bf16 values
 * are converted CHUNK at a time, over many lines, through `tmp`. */
#define CHUNK 4096

static void load_lines(const void *src, int64_t at, int bf16, int64_t nl,
                       int64_t C, int64_t lead, int64_t trail, float *dst) {
    const int64_t plen = lead + C + trail;
    const int64_t per = C < CHUNK ? CHUNK / C : 1;
    float tmp[CHUNK];
    for (int64_t l0 = 0; l0 < nl; l0 += per) {
        const int64_t m = nl - l0 < per ? nl - l0 : per;
        const float *from = (const float *)src + at + l0 * C;
        if (bf16 && C <= CHUNK) {
            to_f32(src, at + l0 * C, 1, m * C, tmp);
            from = tmp;
        }
        for (int64_t line = 0; line < m; line++) {
            float *row = dst + (l0 + line) * plen;
            for (int64_t c = 0; c < lead; c++) row[c] = 0.0f;
            if (bf16 && C > CHUNK)
                to_f32(src, at + (l0 + line) * C, 1, C, row + lead);
            else
                memcpy(row + lead, from + line * C, C * sizeof(float));
            for (int64_t c = 0; c < trail; c++) row[lead + C + c] = 0.0f;
        }
    }
}

static void store_lines(void *dst, int64_t at, int bf16, int64_t nl,
                        int64_t C, int64_t plen, const float *src) {
    const int64_t per = C < CHUNK ? CHUNK / C : 1;
    float tmp[CHUNK];
    for (int64_t l0 = 0; l0 < nl; l0 += per) {
        const int64_t m = nl - l0 < per ? nl - l0 : per;
        float *to = bf16 && C <= CHUNK ? tmp : (float *)dst + at + l0 * C;
        for (int64_t line = 0; line < m; line++) {
            const float *row = src + (l0 + line) * plen;
            if (bf16 && C > CHUNK)
                from_f32(dst, at + (l0 + line) * C, 1, C, row);
            else
                memcpy(to + line * C, row, C * sizeof(float));
        }
        if (bf16 && C <= CHUNK) from_f32(dst, at + l0 * C, 1, m * C, tmp);
    }
}

/* A panel in "padded coordinates": line `line`, channel c, position t
 * sits at line*plen + (c + off)*stride + t, where plen = (C + n - 1)*u
 * and stride = u (the distance between channels). `off` channels of
 * zeros come before each line's C channels and n - 1 - off after, so a
 * window sum is the same array shifted by multiples of `stride`, with
 * no bounds to test. With L > 1 a panel is one line (nl = 1) of up to
 * PANEL positions; with L = 1 (channels_last) it is up to PANEL lines of
 * one position, end to end. */
typedef struct {
    int64_t base, nl, u, stride, plen, total, valid;
} panel_t;

/* The rest of a panel from its base, nl and u. */
static panel_t sized(panel_t p, const lrn_opts *o) {
    p.stride = p.u;
    p.plen = (o->C + o->n - 1) * p.u;
    p.total = p.nl * p.plen;
    /* outputs are computed for i in [0, valid): every (line, c, t) with
     * i = line*plen + c*stride + t; with several lines the few indices
     * that fall on pads are computed too and never stored */
    p.valid = (p.nl - 1) * p.plen + o->C * p.u;
    return p;
}

static panel_t panel_at(int64_t panel, int64_t R, const lrn_opts *o) {
    panel_t p;
    if (o->L > 1) {
        int64_t per_row = (o->L + PANEL - 1) / PANEL;
        int64_t r = panel / per_row, l0 = (panel % per_row) * PANEL;
        p.base = r * o->C * o->L + l0;
        p.nl = 1;
        p.u = o->L - l0 < PANEL ? o->L - l0 : PANEL;
    } else {
        int64_t r0 = panel * PANEL;
        p.base = r0 * o->C;
        p.nl = R - r0 < PANEL ? R - r0 : PANEL;
        p.u = 1;
    }
    return sized(p, o);
}

/* Read the panel's values into `dst` in padded coordinates with `off`
 * leading zero channels; every pad is zeroed. */
static void load(const void *src, const lrn_opts *o, const panel_t *p,
                 int64_t off, float *dst) {
    const int64_t C = o->C, lead = off * p->stride;
    const int64_t trail = (o->n - 1 - off) * p->stride;
    if (o->L == 1) { /* lines of a few dozen values: no calls per line */
        load_lines(src, p->base, o->bf16, p->nl, C, lead, trail, dst);
        return;
    }
    for (int64_t line = 0; line < p->nl; line++) {
        float *row = dst + line * p->plen;
        memset(row, 0, lead * sizeof(float));
        memset(row + lead + C * p->u, 0, trail * sizeof(float));
        for (int64_t c = 0; c < C; c++)
            to_f32(src, p->base + c * o->L, o->bf16, p->u,
                   row + lead + c * p->u);
    }
}

/* Write outputs i = line*plen + c*stride + t of `src` to memory. */
static void store(void *dst, const lrn_opts *o, const panel_t *p,
                  const float *src) {
    const int64_t C = o->C;
    if (o->L == 1) {
        store_lines(dst, p->base, o->bf16, p->nl, C, p->plen, src);
        return;
    }
    for (int64_t line = 0; line < p->nl; line++) {
        const float *row = src + line * p->plen;
        for (int64_t c = 0; c < C; c++)
            from_f32(dst, p->base + c * o->L, o->bf16, p->u,
                     row + c * p->u);
    }
}

/* out[i] = q[i] + q[i + stride] + ... + q[i + (n-1)*stride], i < m, the
 * terms added in that order (as the PyTorch reference adds them). */
static void window_sum(const float *q, int64_t m, int64_t stride, int64_t n,
                       float *out) {
    if (n == 5) { /* the paper's n: one pass */
        const float *q1 = q + stride, *q2 = q + 2 * stride,
                    *q3 = q + 3 * stride, *q4 = q + 4 * stride;
        for (int64_t i = 0; i < m; i++)
            out[i] = (((q[i] + q1[i]) + q2[i]) + q3[i]) + q4[i];
        return;
    }
    memcpy(out, q, m * sizeof(float));
    for (int64_t j = 1; j < n; j++) {
        const float *qj = q + j * stride;
        for (int64_t i = 0; i < m; i++) out[i] += qj[i];
    }
}

static inline float neg_pow(float d, float beta) {
    if (beta == 0.75f) return 1.0f / sqrtf(d * sqrtf(d));
    if (beta == 0.5f) return 1.0f / sqrtf(d);
    return powf(d, -beta);
}

int64_t lrn_panels(int64_t R, int64_t L) {
    return L > 1 ? R * ((L + PANEL - 1) / PANEL) : (R + PANEL - 1) / PANEL;
}

static float *scratch(const lrn_opts *o, int count, int64_t *stride) {
    /* each buffer: a panel in padded coordinates */
    *stride = PANEL * (o->C + o->n - 1);
    return malloc((size_t)count * *stride * sizeof(float));
}

/* The forward of one loaded panel: `a` holds it in padded coordinates
 * (o->before leading zero channels); s[i], i < valid, becomes the
 * output in unpadded coordinates. q is scratch. */
static void core_forward(const float *a, float *q, float *s,
                         const panel_t *p, const lrn_opts *o) {
    const int64_t off = o->before * p->stride;
    const float k = o->k, alpha = o->alpha, beta = o->beta;
    for (int64_t i = 0; i < p->total; i++) q[i] = a[i] * a[i];
    window_sum(q, p->valid, p->stride, o->n, s);
    const float *av = a + off;
    if (beta == 0.75f) {
        for (int64_t i = 0; i < p->valid; i++) {
            float d = k + alpha * s[i];
            s[i] = av[i] * (1.0f / sqrtf(d * sqrtf(d)));
        }
    } else {
        for (int64_t i = 0; i < p->valid; i++)
            s[i] = av[i] * neg_pow(k + alpha * s[i], beta);
    }
}

/* The backward of one loaded panel: `a` and the output gradient `gr`
 * in padded coordinates; s[i], i < valid, becomes the input gradient.
 * q and w are scratch. */
static void core_backward(const float *a, const float *gr, float *q,
                          float *s, float *w, const panel_t *p,
                          const lrn_opts *o) {
    const float k = o->k, alpha = o->alpha, beta = o->beta;
    const float coef = -2.0f * alpha * beta;
    const int64_t off = o->before * p->stride;
    const int64_t woff = o->after * p->stride; /* S' swaps the sides */
    for (int64_t i = 0; i < p->total; i++) q[i] = a[i] * a[i];
    window_sum(q, p->valid, p->stride, o->n, s);
    const float *av = a + off, *gv = gr + off;
    /* s becomes g * p; w (padded for S') g * p * a / d. Where i falls on
     * a pad, a and g are 0, so both are 0 there too. */
    memset(w, 0, woff * sizeof(float));
    float *wv = w + woff;
    for (int64_t i = 0; i < p->valid; i++) {
        float d = k + alpha * s[i];
        float t = gv[i] * neg_pow(d, beta);
        s[i] = t;
        wv[i] = t * av[i] / d;
    }
    memset(wv + p->valid, 0,
           (p->total - p->valid - woff > 0 ? p->total - p->valid - woff
                                           : 0) * sizeof(float));
    window_sum(w, p->valid, p->stride, o->n, q);
    for (int64_t i = 0; i < p->valid; i++)
        s[i] = s[i] + coef * q[i] * av[i];
}

/* Forward over panels [first, last). Returns 0, or -1 if out of memory. */
int lrn_forward(const void *x, void *y, int64_t R, int64_t first,
                int64_t last, const lrn_opts *o) {
    int64_t size;
    float *buf = scratch(o, 3, &size);
    if (!buf) return -1;
    float *a = buf, *q = buf + size, *s = buf + 2 * size;
    for (int64_t panel = first; panel < last; panel++) {
        panel_t p = panel_at(panel, R, o);
        load(x, o, &p, o->before, a);
        core_forward(a, q, s, &p, o);
        store(y, o, &p, s);
    }
    free(buf);
    return 0;
}

/* Backward over panels [first, last): gx from x and the gradient g. */
int lrn_backward(const void *x, const void *g, void *gx, int64_t R,
                 int64_t first, int64_t last, const lrn_opts *o) {
    int64_t size;
    float *buf = scratch(o, 5, &size);
    if (!buf) return -1;
    float *a = buf, *gr = buf + size, *q = buf + 2 * size,
          *s = buf + 3 * size, *w = buf + 4 * size;
    for (int64_t panel = first; panel < last; panel++) {
        panel_t p = panel_at(panel, R, o);
        load(x, o, &p, o->before, a);
        load(g, o, &p, o->before, gr);
        core_backward(a, gr, q, s, w, &p, o);
        store(gx, o, &p, s);
    }
    free(buf);
    return 0;
}

/* ------------------------------------------------------------------ */
/* LRN followed by max-pooling, fused (the paper's conv1 and conv2: LRN,
 * then z x z windows s apart, no padding, floor rounding). The LRN
 * output is never written to memory: the forward pools it row by row
 * from cache and writes the pooled map and, per pooled value, the
 * position of its maximum in the window (one byte, i*z + j); the
 * backward rebuilds the LRN's output gradient row by row from the
 * pooled gradient and those positions, then runs the LRN backward on
 * it. Every value equals the unfused layers' bit for bit: the same LRN
 * arithmetic; the maximum taken over the values as stored (rounded to
 * bfloat16 for bf16 data) with PyTorch's rule (a later value wins if
 * greater or NaN); the pooled gradients added in PyTorch's order
 * (output row by row), each sum rounded to the data type as PyTorch's
 * `+=` on bf16 does.
 *
 * Geometry: the input is (B, groups * C, H, W), NCHW (o->L = H*W) or
 * channels_last (o->L = 1); the output (B, groups * C, Ho, Wo) in the
 * same layout. A "row" is one input row h of one image: W positions of
 * all channels, held in float32 as buf[ch * cs + w * ws] (channels_last:
 * cs = 1, ws = Ct; NCHW: cs = W, ws = 1; Ct = groups * C). */

typedef struct {
    int64_t B, H, W, groups, z, s, Ho, Wo;
} pool_opts;

static float round_as_stored(float v, int bf16) {
    return bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}

/* How many LRN panels one row takes. */
static int64_t row_panels(const lrn_opts *o, const pool_opts *g) {
    if (o->L == 1) return (g->W * g->groups + PANEL - 1) / PANEL;
    return g->groups * ((g->W + PANEL - 1) / PANEL);
}

/* The panel j of row (b, h), and where its lines and positions go in
 * the row buffer: value (line, c, t) of the panel is row[at + line *
 * lstep + c * cstep + t]. */
static panel_t row_panel(const lrn_opts *o, const pool_opts *g, int64_t b,
                         int64_t h, int64_t j, int64_t *at, int64_t *lstep,
                         int64_t *cstep) {
    panel_t p;
    const int64_t C = o->C;
    if (o->L == 1) { /* lines: (w, group), C channels each, contiguous */
        int64_t lines = g->W * g->groups, l0 = j * PANEL;
        int64_t r0 = (b * g->H + h) * lines + l0;
        p.base = r0 * C;
        p.nl = lines - l0 < PANEL ? lines - l0 : PANEL;
        p.u = 1;
        *at = l0 * C;
        *lstep = C, *cstep = 1;
    } else { /* one line (b, group), up to PANEL positions of row h */
        int64_t per = (g->W + PANEL - 1) / PANEL;
        int64_t grp = j / per, w0 = (j % per) * PANEL;
        p.base = (b * g->groups + grp) * C * o->L + h * g->W + w0;
        p.nl = 1;
        p.u = g->W - w0 < PANEL ? g->W - w0 : PANEL;
        *at = grp * C * g->W + w0;
        *lstep = 0, *cstep = g->W;
    }
    return sized(p, o);
}

/* n values rounded as stored: bf16 data hold bf16-rounded values. */
static void copy_as_stored(float *dst, const float *src, int64_t n,
                           int bf16) {
    if (!bf16) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
}

/* The LRN output of row (b, h) into `row`, as stored (bf16-rounded). */
static void lrn_row(const void *x, const lrn_opts *o, const pool_opts *g,
                    int64_t b, int64_t h, float *a, float *q, float *s,
                    float *row) {
    for (int64_t j = 0; j < row_panels(o, g); j++) {
        int64_t at, ls, cs;
        panel_t p = row_panel(o, g, b, h, j, &at, &ls, &cs);
        load(x, o, &p, o->before, a);
        core_forward(a, q, s, &p, o);
        if (o->L == 1) { /* line by line, channels contiguous */
            for (int64_t line = 0; line < p.nl; line++)
                copy_as_stored(row + at + line * ls, s + line * p.plen,
                               o->C, o->bf16);
        } else { /* channel by channel, positions contiguous */
            for (int64_t c = 0; c < o->C; c++)
                copy_as_stored(row + at + c * cs, s + c * p.u, p.u,
                               o->bf16);
        }
    }
}

/* PyTorch's rule over a window: a value replaces the maximum if it is
 * greater or NaN; K is the value's place in the window. */
static void max_in(const float *v, int64_t n, int64_t step, int32_t K,
                   float *mx, int32_t *kk) {
    if (step == 1) {
        for (int64_t i = 0; i < n; i++) {
            float val = v[i];
            int take = (val > mx[i]) | (val != val);
            mx[i] = take ? val : mx[i];
            kk[i] = take ? K : kk[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float val = v[i * step];
            int take = (val > mx[i]) | (val != val);
            mx[i] = take ? val : mx[i];
            kk[i] = take ? K : kk[i];
        }
    }
}

static int64_t pool_row_base(const pool_opts *g, int64_t Ct, int64_t L,
                             int64_t b, int64_t oh) {
    /* offset of pooled (b, channel 0, oh, 0) */
    return L == 1 ? (b * g->Ho + oh) * g->Wo * Ct
                  : b * Ct * g->Ho * g->Wo + oh * g->Wo;
}

/* Where values sit: Ct channels in all; a row buffer of rowlen values
 * holds (ch, w) at ch * cs + w * ws; pooled (ch, ow) of one pooled row
 * is at that row's base + ch * ocs + ow * ows; cl: channels_last. */
typedef struct {
    int64_t Ct, rowlen, cl, cs, ws, ocs, ows;
} strides_t;

static strides_t strides_of(const lrn_opts *o, const pool_opts *g) {
    strides_t t;
    t.Ct = g->groups * o->C;
    t.rowlen = g->W * t.Ct;
    t.cl = o->L == 1;
    t.cs = t.cl ? 1 : g->W;
    t.ws = t.cl ? t.Ct : 1;
    t.ocs = t.cl ? 1 : g->Ho * g->Wo;
    t.ows = t.cl ? t.Ct : 1;
    return t;
}

/* Row by row: forward over pooled rows [first, last) of the B * Ho. */
static int rows_forward(const void *x, void *out, uint8_t *where,
                        int64_t first, int64_t last, const lrn_opts *o,
                        const pool_opts *g) {
    const strides_t t = strides_of(o, g);
    const int64_t Ct = t.Ct, rowlen = t.rowlen, cl = t.cl, cs = t.cs,
                  ws = t.ws, ocs = t.ocs, ows = t.ows, z = g->z, st = g->s;
    int64_t size;
    float *buf = scratch(o, 3, &size);
    float *rows = malloc((size_t)z * rowlen * sizeof(float));
    float *mx = malloc((size_t)Ct * sizeof(float));
    int32_t *kk = malloc((size_t)Ct * sizeof(int32_t));
    uint8_t *k8 = malloc((size_t)Ct);
    int64_t *tag = malloc((size_t)z * sizeof(int64_t));
    if (!buf || !rows || !mx || !kk || !k8 || !tag) {
        free(buf), free(rows), free(mx), free(kk), free(k8), free(tag);
        return -1;
    }
    float *a = buf, *q = buf + size, *s = buf + 2 * size;
    for (int64_t i = 0; i < z; i++) tag[i] = -1;
    for (int64_t item = first; item < last; item++) {
        const int64_t b = item / g->Ho, oh = item % g->Ho;
        /* the z input rows of this pooled row, each computed once while
         * it stays in the ring (slot h % z) */
        for (int64_t i = 0; i < z; i++) {
            int64_t h = oh * st + i, key = b * g->H + h, slot = h % z;
            if (tag[slot] != key) {
                lrn_row(x, o, g, b, h, a, q, s, rows + slot * rowlen);
                tag[slot] = key;
            }
        }
        const int64_t base = pool_row_base(g, Ct, o->L, b, oh);
        for (int64_t ow = 0; ow < g->Wo; ow++) {
            for (int64_t ch = 0; ch < Ct; ch++) {
                mx[ch] = -INFINITY;
                kk[ch] = 0;
            }
            for (int64_t i = 0; i < z; i++) {
                const float *row = rows + ((oh * st + i) % z) * rowlen;
                for (int64_t j = 0; j < z; j++)
                    max_in(row + (ow * st + j) * ws, Ct, cs,
                           (int32_t)(i * z + j), mx, kk);
            }
            for (int64_t ch = 0; ch < Ct; ch++) k8[ch] = (uint8_t)kk[ch];
            const int64_t at = base + ow * ows;
            if (cl) {
                from_f32(out, at, o->bf16, Ct, mx);
                memcpy(where + at, k8, Ct);
            } else {
                for (int64_t ch = 0; ch < Ct; ch++) {
                    from_f32(out, at + ch * ocs, o->bf16, 1, mx + ch);
                    where[at + ch * ocs] = k8[ch];
                }
            }
        }
    }
    free(buf), free(rows), free(mx), free(kk), free(k8), free(tag);
    return 0;
}

/* d[i] += v[i] where k[i] == K (i < n, d and k `step` apart), each sum
 * rounded as stored. */
static void add_where(float *d, int64_t step, const float *v,
                      const int32_t *k, int32_t K, int64_t n, int bf16) {
    if (step == 1 && !bf16) {
        for (int64_t i = 0; i < n; i++) d[i] = k[i] == K ? d[i] + v[i] : d[i];
    } else if (step == 1) {
        for (int64_t i = 0; i < n; i++)
            d[i] = k[i] == K ? bf16_to_f32(f32_to_bf16(d[i] + v[i])) : d[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            if (k[i] == K)
                d[i * step] = round_as_stored(d[i * step] + v[i], bf16);
    }
}

/* Row by row: backward over input rows [first, last) of the B * H: gx
 * from x, the pooled gradient gy and the positions of the maxima. */
static int rows_backward(const void *x, const void *gy,
                         const uint8_t *where, void *gx, int64_t first,
                         int64_t last, const lrn_opts *o,
                         const pool_opts *g) {
    const strides_t t = strides_of(o, g);
    const int64_t Ct = t.Ct, rowlen = t.rowlen, cl = t.cl, cs = t.cs,
                  ws = t.ws, ocs = t.ocs, ows = t.ows, z = g->z, st = g->s;
    int64_t size;
    float *buf = scratch(o, 5, &size);
    float *grow = malloc((size_t)rowlen * sizeof(float));
    float *gv = malloc((size_t)Ct * sizeof(float));
    int32_t *kv = malloc((size_t)Ct * sizeof(int32_t));
    if (!buf || !grow || !gv || !kv) {
        free(buf), free(grow), free(gv), free(kv);
        return -1;
    }
    float *a = buf, *gr = buf + size, *q = buf + 2 * size,
          *s = buf + 3 * size, *w = buf + 4 * size;
    for (int64_t item = first; item < last; item++) {
        const int64_t b = item / g->H, h = item % g->H;
        /* the LRN output's gradient on row h: every pooled value whose
         * maximum sat here, added in PyTorch's order (pooled rows, then
         * columns, ascending), each sum rounded as stored */
        for (int64_t i = 0; i < rowlen; i++) grow[i] = 0.0f;
        int64_t lo = h >= z ? (h - z) / st + 1 : 0; /* oh*st + z > h */
        int64_t hi = h / st < g->Ho - 1 ? h / st : g->Ho - 1;
        for (int64_t oh = lo; oh <= hi; oh++) {
            const int64_t i = h - oh * st;
            const int64_t base = pool_row_base(g, Ct, o->L, b, oh);
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                const int64_t at = base + ow * ows;
                if (cl) {
                    to_f32(gy, at, o->bf16, Ct, gv);
                    for (int64_t ch = 0; ch < Ct; ch++)
                        kv[ch] = where[at + ch];
                } else {
                    for (int64_t ch = 0; ch < Ct; ch++) {
                        to_f32(gy, at + ch * ocs, o->bf16, 1, gv + ch);
                        kv[ch] = where[at + ch * ocs];
                    }
                }
                for (int64_t j = 0; j < z; j++)
                    add_where(grow + (ow * st + j) * ws, cs, gv, kv,
                              (int32_t)(i * z + j), Ct, o->bf16);
            }
        }
        for (int64_t j = 0; j < row_panels(o, g); j++) {
            int64_t at, ls, cst;
            panel_t p = row_panel(o, g, b, h, j, &at, &ls, &cst);
            load(x, o, &p, o->before, a);
            /* the gradient panel from the row, in padded coordinates */
            const int64_t off = o->before * p.stride;
            memset(gr, 0, p.total * sizeof(float));
            if (cl) {
                for (int64_t line = 0; line < p.nl; line++)
                    memcpy(gr + line * p.plen + off, grow + at + line * ls,
                           o->C * sizeof(float));
            } else {
                for (int64_t c = 0; c < o->C; c++)
                    memcpy(gr + off + c * p.u, grow + at + c * cst,
                           p.u * sizeof(float));
            }
            core_backward(a, gr, q, s, w, &p, o);
            store(gx, o, &p, s);
        }
    }
    free(buf), free(grow), free(gv), free(kv);
    return 0;
}

/* Image by image, for small maps (an image's maps fit in IMAGE_FLOATS
 * floats: the CIFAR proxies'). Rows of a few dozen positions make
 * panels too small to run at speed, so here the LRN runs over a whole
 * image in panels laid out as the unfused kernel's, into a float32 copy
 * of the image in its memory layout; the pooling reads that copy, and
 * the backward gathers the LRN output's gradient into such a copy. The
 * arithmetic of every value, and the order of every sum, are those of
 * the row-by-row code (and of the layers apart). */
#define IMAGE_FLOATS 65536

static int image_mode(const lrn_opts *o, const pool_opts *g) {
    return g->groups * o->C * g->H * g->W <= IMAGE_FLOATS;
}

/* The panels of one image: channels_last, its lines (position, group)
 * PANEL at a time; NCHW, each line (group) PANEL positions at a time. */
static int64_t image_panels(const lrn_opts *o, const pool_opts *g) {
    if (o->L == 1) return (g->H * g->W * g->groups + PANEL - 1) / PANEL;
    return g->groups * ((o->L + PANEL - 1) / PANEL);
}

static panel_t image_panel(const lrn_opts *o, const pool_opts *g, int64_t b,
                           int64_t j) {
    panel_t p;
    if (o->L == 1) {
        int64_t lines = g->H * g->W * g->groups, l0 = j * PANEL;
        p.base = (b * lines + l0) * o->C;
        p.nl = lines - l0 < PANEL ? lines - l0 : PANEL;
        p.u = 1;
    } else {
        int64_t per = (o->L + PANEL - 1) / PANEL;
        int64_t grp = j / per, l0 = (j % per) * PANEL;
        p.base = (b * g->groups + grp) * o->C * o->L + l0;
        p.nl = 1;
        p.u = o->L - l0 < PANEL ? o->L - l0 : PANEL;
    }
    return sized(p, o);
}

/* Offsets of window place k = i * z + j from the window's corner, in
 * the image copy (memory layout). */
static void window_offsets(const pool_opts *g, int64_t Ct, int cl,
                           int64_t *off) {
    for (int64_t i = 0; i < g->z; i++)
        for (int64_t j = 0; j < g->z; j++)
            off[i * g->z + j] = cl ? (i * g->W + j) * Ct : i * g->W + j;
}

static int images_forward(const void *x, void *out, uint8_t *where,
                          int64_t first, int64_t last, const lrn_opts *o,
                          const pool_opts *g) {
    const strides_t t = strides_of(o, g);
    const int64_t Ct = t.Ct, HW = g->H * g->W, z = g->z, st = g->s;
    const int64_t len = Ct * HW, olen = Ct * g->Ho * g->Wo;
    lrn_opts of = *o; /* the image copy holds float32 */
    of.bf16 = 0;
    int64_t size;
    float *buf = scratch(o, 3, &size);
    float *img = malloc((size_t)len * sizeof(float));
    float *mx = malloc((size_t)olen * sizeof(float));
    int32_t *kk = malloc((size_t)olen * sizeof(int32_t));
    uint8_t *k8 = malloc((size_t)olen);
    float *mt = malloc((size_t)olen * sizeof(float));
    int32_t *kt = malloc((size_t)olen * sizeof(int32_t));
    if (!buf || !img || !mx || !kk || !k8 || !mt || !kt) {
        free(buf), free(img), free(mx), free(kk), free(k8), free(mt),
            free(kt);
        return -1;
    }
    float *a = buf, *q = buf + size, *s = buf + 2 * size;
    for (int64_t b = first; b < last; b++) {
        for (int64_t j = 0; j < image_panels(o, g); j++) {
            panel_t p = image_panel(o, g, b, j);
            load(x, o, &p, o->before, a);
            core_forward(a, q, s, &p, o);
            panel_t in_img = p;
            in_img.base -= b * len;
            store(img, &of, &in_img, s);
        }
        copy_as_stored(img, img, len, o->bf16);
        for (int64_t i = 0; i < olen; i++) {
            mx[i] = -INFINITY;
            kk[i] = 0;
        }
        for (int64_t i = 0; i < z; i++) {
            for (int64_t j = 0; j < z; j++) {
                const int32_t K = (int32_t)(i * z + j);
                /* (oh, ow) by (oh, ow), all channels at once; mx and
                 * kk hold them channels last in either layout */
                for (int64_t oh = 0; oh < g->Ho; oh++)
                    for (int64_t ow = 0; ow < g->Wo; ow++) {
                        int64_t at = (oh * g->Wo + ow) * Ct;
                        int64_t from = (oh * st + i) * g->W + ow * st + j;
                        max_in(img + (t.cl ? from * Ct : from), Ct,
                               t.cl ? 1 : HW, K, mx + at, kk + at);
                    }
            }
        }
        if (!t.cl) { /* to NCHW order */
            const int64_t HWo = g->Ho * g->Wo;
            for (int64_t ch = 0; ch < Ct; ch++)
                for (int64_t i = 0; i < HWo; i++) {
                    mt[ch * HWo + i] = mx[i * Ct + ch];
                    kt[ch * HWo + i] = kk[i * Ct + ch];
                }
            memcpy(mx, mt, olen * sizeof(float));
            memcpy(kk, kt, olen * sizeof(int32_t));
        }
        for (int64_t i = 0; i < olen; i++) k8[i] = (uint8_t)kk[i];
        from_f32(out, b * olen, o->bf16, olen, mx);
        memcpy(where + b * olen, k8, olen);
    }
    free(buf), free(img), free(mx), free(kk), free(k8), free(mt), free(kt);
    return 0;
}

static int images_backward(const void *x, const void *gy,
                           const uint8_t *where, void *gx, int64_t first,
                           int64_t last, const lrn_opts *o,
                           const pool_opts *g) {
    const strides_t t = strides_of(o, g);
    const int64_t Ct = t.Ct, HW = g->H * g->W, st = g->s;
    const int64_t len = Ct * HW, olen = Ct * g->Ho * g->Wo;
    lrn_opts of = *o; /* the image copy holds float32 */
    of.bf16 = 0;
    int64_t off[15 * 15];
    window_offsets(g, Ct, t.cl, off);
    int64_t size;
    float *buf = scratch(o, 5, &size);
    float *img = malloc((size_t)len * sizeof(float));
    float *gv = malloc((size_t)olen * sizeof(float));
    if (!buf || !img || !gv) {
        free(buf), free(img), free(gv);
        return -1;
    }
    float *a = buf, *gr = buf + size, *q = buf + 2 * size,
          *s = buf + 3 * size, *w = buf + 4 * size;
    for (int64_t b = first; b < last; b++) {
        /* the LRN output's gradient: each pooled value's added where its
         * maximum sat, pooled rows then columns ascending (PyTorch's
         * order for any one input), each sum rounded as stored */
        for (int64_t i = 0; i < len; i++) img[i] = 0.0f;
        to_f32(gy, b * olen, o->bf16, olen, gv);
        const uint8_t *k = where + b * olen;
        if (t.cl) {
            for (int64_t oh = 0; oh < g->Ho; oh++)
                for (int64_t ow = 0; ow < g->Wo; ow++) {
                    const int64_t at = (oh * g->Wo + ow) * Ct;
                    float *d = img + (oh * st * g->W + ow * st) * Ct;
                    for (int64_t ch = 0; ch < Ct; ch++) {
                        float *e = d + off[k[at + ch]] + ch;
                        *e = round_as_stored(*e + gv[at + ch], o->bf16);
                    }
                }
        } else {
            for (int64_t ch = 0; ch < Ct; ch++)
                for (int64_t oh = 0; oh < g->Ho; oh++)
                    for (int64_t ow = 0; ow < g->Wo; ow++) {
                        const int64_t at = (ch * g->Ho + oh) * g->Wo + ow;
                        float *e = img + ch * HW + oh * st * g->W + ow * st
                                   + off[k[at]];
                        *e = round_as_stored(*e + gv[at], o->bf16);
                    }
        }
        for (int64_t j = 0; j < image_panels(o, g); j++) {
            panel_t p = image_panel(o, g, b, j);
            load(x, o, &p, o->before, a);
            panel_t in_img = p;
            in_img.base -= b * len;
            load(img, &of, &in_img, o->before, gr);
            core_backward(a, gr, q, s, w, &p, o);
            store(gx, o, &p, s);
        }
    }
    free(buf), free(img), free(gv);
    return 0;
}

/* Forward over work items [first, last): images or pooled rows. */
int lrn_pool_forward(const void *x, void *out, uint8_t *where, int64_t first,
                     int64_t last, const lrn_opts *o, const pool_opts *g) {
    return image_mode(o, g)
               ? images_forward(x, out, where, first, last, o, g)
               : rows_forward(x, out, where, first, last, o, g);
}

/* Backward over work items [first, last): images or input rows. */
int lrn_pool_backward(const void *x, const void *gy, const uint8_t *where,
                      void *gx, int64_t first, int64_t last,
                      const lrn_opts *o, const pool_opts *g) {
    return image_mode(o, g)
               ? images_backward(x, gy, where, gx, first, last, o, g)
               : rows_backward(x, gy, where, gx, first, last, o, g);
}

/* ------------------------------------------------------------------ */
/* Threads. The work of a call is cut into `threads` shares, share t
 * being items [items * t / threads, items * (t + 1) / threads). With
 * share = -1 an entry point does every share: built with -fopenmp
 * (where the process already runs PyTorch's GNU OpenMP runtime), on
 * `threads` threads of that runtime, i.e. PyTorch's own worker threads,
 * still spinning from the operation before, so none competes for a
 * core; built without, one after the other. With share >= 0 it does
 * that share only: then Python runs the shares on its own threads
 * (lrn_openmp() says which build this is). Every item is computed the
 * same way whoever runs it: the split changes no bit. */
#ifdef _OPENMP
int lrn_openmp(void) { return 1; }
#define PARALLEL _Pragma("omp parallel for num_threads(threads) schedule(static) reduction(|:err)")
#else
int lrn_openmp(void) { return 0; }
#define PARALLEL
#endif

#define SPLIT(items, call)                                            \
    int err = 0;                                                      \
    if (share >= 0) {                                                 \
        int t = share;                                                \
        int64_t first = (items) * t / threads;                        \
        int64_t last = (items) * (t + 1) / threads;                   \
        return last > first ? (call) : 0;                             \
    }                                                                 \
    PARALLEL                                                          \
    for (int t = 0; t < threads; t++) {                               \
        int64_t first = (items) * t / threads;                        \
        int64_t last = (items) * (t + 1) / threads;                   \
        if (last > first) err |= (call);                              \
    }                                                                 \
    return err;

int lrn_forward_all(const void *x, void *y, int64_t R, int share,
                    int threads, const lrn_opts *o) {
    SPLIT(lrn_panels(R, o->L), lrn_forward(x, y, R, first, last, o))
}

int lrn_backward_all(const void *x, const void *g, void *gx, int64_t R,
                     int share, int threads, const lrn_opts *o) {
    SPLIT(lrn_panels(R, o->L), lrn_backward(x, g, gx, R, first, last, o))
}

int lrn_pool_forward_all(const void *x, void *out, uint8_t *where,
                         int share, int threads, const lrn_opts *o,
                         const pool_opts *g) {
    SPLIT(image_mode(o, g) ? g->B : g->B * g->Ho,
          lrn_pool_forward(x, out, where, first, last, o, g))
}

int lrn_pool_backward_all(const void *x, const void *gy,
                          const uint8_t *where, void *gx, int share,
                          int threads, const lrn_opts *o,
                          const pool_opts *g) {
    SPLIT(image_mode(o, g) ? g->B : g->B * g->H,
          lrn_pool_backward(x, gy, where, gx, first, last, o, g))
}
