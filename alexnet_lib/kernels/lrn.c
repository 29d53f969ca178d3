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
    p.stride = p.u;
    p.plen = (o->C + o->n - 1) * p.u;
    p.total = p.nl * p.plen;
    /* outputs are computed for i in [0, valid): every (line, c, t) with
     * i = line*plen + c*stride + t; with several lines the few indices
     * that fall on pads are computed too and never stored */
    p.valid = (p.nl - 1) * p.plen + o->C * p.u;
    return p;
}

/* Read the panel's values into `dst` in padded coordinates with `off`
 * leading zero channels; every pad is zeroed. */
static void load(const void *src, const lrn_opts *o, const panel_t *p,
                 int64_t off, float *dst) {
    const int64_t C = o->C, lead = off * p->stride;
    const int64_t trail = (o->n - 1 - off) * p->stride;
    for (int64_t line = 0; line < p->nl; line++) {
        float *row = dst + line * p->plen;
        memset(row, 0, lead * sizeof(float));
        memset(row + lead + C * p->u, 0, trail * sizeof(float));
        if (o->L == 1) {
            to_f32(src, p->base + line * C, o->bf16, C, row + lead);
        } else {
            for (int64_t c = 0; c < C; c++)
                to_f32(src, p->base + c * o->L, o->bf16, p->u,
                       row + lead + c * p->u);
        }
    }
}

/* Write outputs i = line*plen + c*stride + t of `src` to memory. */
static void store(void *dst, const lrn_opts *o, const panel_t *p,
                  const float *src) {
    const int64_t C = o->C;
    for (int64_t line = 0; line < p->nl; line++) {
        const float *row = src + line * p->plen;
        if (o->L == 1) {
            from_f32(dst, p->base + line * C, o->bf16, C, row);
        } else {
            for (int64_t c = 0; c < C; c++)
                from_f32(dst, p->base + c * o->L, o->bf16, p->u,
                         row + c * p->u);
        }
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

/* Forward over panels [first, last). Returns 0, or -1 if out of memory. */
int lrn_forward(const void *x, void *y, int64_t R, int64_t first,
                int64_t last, const lrn_opts *o) {
    int64_t size;
    float *buf = scratch(o, 3, &size);
    if (!buf) return -1;
    float *a = buf, *q = buf + size, *s = buf + 2 * size;
    const float k = o->k, alpha = o->alpha, beta = o->beta;
    for (int64_t panel = first; panel < last; panel++) {
        panel_t p = panel_at(panel, R, o);
        const int64_t off = o->before * p.stride;
        load(x, o, &p, o->before, a);
        for (int64_t i = 0; i < p.total; i++) q[i] = a[i] * a[i];
        window_sum(q, p.valid, p.stride, o->n, s);
        const float *av = a + off;
        if (beta == 0.75f) {
            for (int64_t i = 0; i < p.valid; i++) {
                float d = k + alpha * s[i];
                s[i] = av[i] * (1.0f / sqrtf(d * sqrtf(d)));
            }
        } else {
            for (int64_t i = 0; i < p.valid; i++)
                s[i] = av[i] * neg_pow(k + alpha * s[i], beta);
        }
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
    const float k = o->k, alpha = o->alpha, beta = o->beta;
    const float coef = -2.0f * alpha * beta;
    for (int64_t panel = first; panel < last; panel++) {
        panel_t p = panel_at(panel, R, o);
        const int64_t off = o->before * p.stride;
        const int64_t woff = o->after * p.stride; /* S' swaps the sides */
        load(x, o, &p, o->before, a);
        load(g, o, &p, o->before, gr);
        for (int64_t i = 0; i < p.total; i++) q[i] = a[i] * a[i];
        window_sum(q, p.valid, p.stride, o->n, s);
        const float *av = a + off, *gv = gr + off;
        /* s becomes g * p; w (padded for S') g * p * a / d. Where i
         * falls on a pad, a and g are 0, so both are 0 there too. */
        memset(w, 0, woff * sizeof(float));
        float *wv = w + woff;
        for (int64_t i = 0; i < p.valid; i++) {
            float d = k + alpha * s[i];
            float t = gv[i] * neg_pow(d, beta);
            s[i] = t;
            wv[i] = t * av[i] / d;
        }
        memset(wv + p.valid, 0,
               (p.total - p.valid - woff > 0 ? p.total - p.valid - woff
                                             : 0) * sizeof(float));
        window_sum(w, p.valid, p.stride, o->n, q);
        for (int64_t i = 0; i < p.valid; i++)
            s[i] = s[i] + coef * q[i] * av[i];
        store(gx, o, &p, s);
    }
    free(buf);
    return 0;
}
