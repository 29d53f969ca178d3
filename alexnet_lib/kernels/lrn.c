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

/* Copy a panel (nl lines, C channels, u positions) from memory. With
 * L = 1 the panel is one contiguous run (lines are rows of C channels);
 * otherwise each channel's u positions are. */
static void load(const void *src, int64_t base, const lrn_opts *o, int64_t nl,
                 int64_t u, float *dst) {
    if (o->L == 1) {
        to_f32(src, base, o->bf16, nl * o->C, dst);
        return;
    }
    for (int64_t c = 0; c < o->C; c++)
        to_f32(src, base + c * o->L, o->bf16, u, dst + c * u);
}

static void store(void *dst, int64_t base, const lrn_opts *o, int64_t nl,
                  int64_t u, const float *src) {
    if (o->L == 1) {
        from_f32(dst, base, o->bf16, nl * o->C, src);
        return;
    }
    for (int64_t c = 0; c < o->C; c++)
        from_f32(dst, base + c * o->L, o->bf16, u, src + c * u);
}

/* out[line][i] = sum_j padded[line][i + j*u], j = 0 .. n-1, where padded
 * holds `pad_lo` zero channels, then the C channels of `v`, then zeros.
 * With u = 1 (many short lines) the padded lines sit end to end and the
 * sums run over all of them at once; a sum never reaches past its own
 * line's pads, and the results are then packed line after line. */
static void window_sum(const float *v, int64_t nl, int64_t u, int64_t C,
                       int64_t n, int64_t pad_lo, float *padded, float *out) {
    const int64_t len = C * u, plen = (C + n - 1) * u;
    if (u == 1 && nl > 1) {
        const int64_t pad_hi = n - 1 - pad_lo;
        for (int64_t line = 0; line < nl; line++) {
            float *p = padded + line * plen;
            for (int64_t i = 0; i < pad_lo; i++) p[i] = 0.0f;
            memcpy(p + pad_lo, v + line * C, C * sizeof(float));
            for (int64_t i = 0; i < pad_hi; i++) p[pad_lo + C + i] = 0.0f;
        }
        const int64_t m = nl * plen - (n - 1);
        memcpy(out, padded, m * sizeof(float));
        for (int64_t j = 1; j < n; j++) {
            const float *q = padded + j;
            for (int64_t i = 0; i < m; i++) out[i] += q[i];
        }
        for (int64_t line = 1; line < nl; line++)
            memmove(out + line * C, out + line * plen, C * sizeof(float));
        return;
    }
    for (int64_t line = 0; line < nl; line++) {
        float *p = padded + line * plen;
        float *s = out + line * len;
        memset(p, 0, plen * sizeof(float));
        memcpy(p + pad_lo * u, v + line * len, len * sizeof(float));
        memcpy(s, p, len * sizeof(float));
        for (int64_t j = 1; j < n; j++) {
            const float *q = p + j * u;
            for (int64_t i = 0; i < len; i++) s[i] += q[i];
        }
    }
}

/* d = k + alpha * S(a*a) and p = d ** -beta over m elements. */
static void denominator(const float *a, int64_t nl, int64_t u,
                        const lrn_opts *o, float *sq, float *padded,
                        float *d, float *p) {
    const int64_t m = nl * o->C * u;
    for (int64_t i = 0; i < m; i++) sq[i] = a[i] * a[i];
    window_sum(sq, nl, u, o->C, o->n, o->before, padded, d);
    const float k = o->k, alpha = o->alpha, beta = o->beta;
    for (int64_t i = 0; i < m; i++) d[i] = k + alpha * d[i];
    if (beta == 0.75f) {
        for (int64_t i = 0; i < m; i++) p[i] = 1.0f / sqrtf(d[i] * sqrtf(d[i]));
    } else if (beta == 0.5f) {
        for (int64_t i = 0; i < m; i++) p[i] = 1.0f / sqrtf(d[i]);
    } else {
        for (int64_t i = 0; i < m; i++) p[i] = powf(d[i], -beta);
    }
}

/* The panel at index `panel`: its first element, lines and width. */
static void panel_at(int64_t panel, int64_t R, const lrn_opts *o,
                     int64_t *base, int64_t *nl, int64_t *u) {
    if (o->L > 1) {
        int64_t per_row = (o->L + PANEL - 1) / PANEL;
        int64_t r = panel / per_row, l0 = (panel % per_row) * PANEL;
        *base = r * o->C * o->L + l0;
        *nl = 1;
        *u = o->L - l0 < PANEL ? o->L - l0 : PANEL;
    } else {
        int64_t r0 = panel * PANEL;
        *base = r0 * o->C;
        *nl = R - r0 < PANEL ? R - r0 : PANEL;
        *u = 1;
    }
}

int64_t lrn_panels(int64_t R, int64_t L) {
    return L > 1 ? R * ((L + PANEL - 1) / PANEL) : (R + PANEL - 1) / PANEL;
}

static float *scratch(const lrn_opts *o, int count) {
    /* each buffer: PANEL lines or positions of C + n - 1 channels */
    return malloc((size_t)count * PANEL * (o->C + o->n - 1) * sizeof(float));
}

/* Forward over panels [first, last). Returns 0, or -1 if out of memory. */
int lrn_forward(const void *x, void *y, int64_t R, int64_t first,
                int64_t last, const lrn_opts *o) {
    const int64_t stride = PANEL * (o->C + o->n - 1);
    float *buf = scratch(o, 5);
    if (!buf) return -1;
    float *a = buf, *sq = buf + stride, *padded = buf + 2 * stride,
          *d = buf + 3 * stride, *p = buf + 4 * stride;
    for (int64_t panel = first; panel < last; panel++) {
        int64_t base, nl, u;
        panel_at(panel, R, o, &base, &nl, &u);
        const int64_t m = nl * o->C * u;
        load(x, base, o, nl, u, a);
        denominator(a, nl, u, o, sq, padded, d, p);
        for (int64_t i = 0; i < m; i++) p[i] = a[i] * p[i];
        store(y, base, o, nl, u, p);
    }
    free(buf);
    return 0;
}

/* Backward over panels [first, last): gx from x and the gradient g. */
int lrn_backward(const void *x, const void *g, void *gx, int64_t R,
                 int64_t first, int64_t last, const lrn_opts *o) {
    const int64_t stride = PANEL * (o->C + o->n - 1);
    float *buf = scratch(o, 6);
    if (!buf) return -1;
    float *a = buf, *gr = buf + stride, *sq = buf + 2 * stride,
          *padded = buf + 3 * stride, *d = buf + 4 * stride,
          *p = buf + 5 * stride;
    const float coef = -2.0f * o->alpha * o->beta;
    for (int64_t panel = first; panel < last; panel++) {
        int64_t base, nl, u;
        panel_at(panel, R, o, &base, &nl, &u);
        const int64_t m = nl * o->C * u;
        load(x, base, o, nl, u, a);
        load(g, base, o, nl, u, gr);
        denominator(a, nl, u, o, sq, padded, d, p);
        for (int64_t i = 0; i < m; i++) {
            float t = gr[i] * p[i];  /* g * p */
            gr[i] = t;
            sq[i] = t * a[i] / d[i]; /* g * p * a / d */
        }
        /* S' pads `after` channels before and `before` after */
        window_sum(sq, nl, u, o->C, o->n, o->after, padded, d);
        for (int64_t i = 0; i < m; i++) gr[i] = gr[i] + coef * d[i] * a[i];
        store(gx, base, o, nl, u, gr);
    }
    free(buf);
    return 0;
}
