/* One sampler step on the CPU in a single call: what `StepInputs` and a built-in
 * sampler's `select` compute with a dozen tensor ops, for each row's current block
 * (A rows x L positions). Loaded by ../kernel.py (compiled on first use with the system's
 * C compiler); the tensor path in base.py stays the reference and the fallback.
 *
 * Why: at batch 1 on a CPU each of those ops pays the dispatcher's cost, high right
 * after a model forward (which evicts its code and data from the caches); this loop
 * touches little code. scripts/measure_step_paths.py measures the difference.
 *
 * Semantics (the same as the tensor path, tested against it):
 *   x0   = argmax of the logits with mask_id excluded, the first index on ties;
 *   p    = softmax of the logits (all V entries) in double precision;
 *   conf = p[x0];  ent = -sum p log p, computed as log(s) - sum(e * d) / s with
 *          d = l - max(l), e = exp(d), s = sum(e): one exp per entry, no log.
 * Only masked positions (tokens == mask_id) are looked at or written.
 * Built with plain -O2: no fast-math, so no reassociation of the sums. */
#include <math.h>
#include <stdint.h>

/* Rule ids and the block limit come from ../kernel.py (RULES, MAX_BLOCK) as -D flags at build
 * time, so Python and C cannot disagree; tests/test_step_kernel.py checks the names match. */
#if !defined(ENTROPY_THRESHOLD) || !defined(CONFIDENCE_THRESHOLD) || !defined(TOP_K_CONFIDENCE) || \
    !defined(ENTROPY_BOUND) || !defined(ENTROPY_THRESHOLD_FORCED) || !defined(MAX_BLOCK)
#error "build through dpbench/samplers/kernel.py: it passes the rule ids and MAX_BLOCK"
#endif

static void position_stats(const float *l, int64_t V, int64_t mask_id, int64_t *x0, double *conf, double *ent) {
    float m = -INFINITY, best = -INFINITY;
    int64_t arg = -1;
    for (int64_t j = 0; j < V; j++) {
        float v = l[j];
        if (v > m) m = v;
        if (j != mask_id && (arg < 0 || v > best)) {
            best = v;
            arg = j;
        }
    }
    double dm = (double)m, s = 0.0, t = 0.0;
    for (int64_t j = 0; j < V; j++) {
        double d = (double)l[j] - dm, e = exp(d);
        s += e;
        if (e > 0.0) t += e * d; /* e == 0: its entropy term is 0 (and d may be -inf) */
    }
    *x0 = arg;
    *conf = exp((double)best - dm) / s;
    *ent = log(s) - t / s;
}

/* logits: A rows x L positions x V entries, strides la, ll (elements; entries contiguous).
 * tokens: A rows x L positions (int64, row stride ta); committed tokens are written here.
 * rule / param: a rule id (kernel.py RULES) with its threshold, or gamma; k: per row, for TOP_K_CONFIDENCE.
 * hi: per row, only positions j < hi[a] may be committed (NULL: all L); forced: per row a range
 *   [forced[2a], forced[2a+1]) for ENTROPY_THRESHOLD_FORCED (empty or NULL: none).
 * left: per row, 1 if masks remain (below hi) after this step.
 * chunk > 0: counts[a * (L / chunk) + c] = masks left in positions [c * chunk, (c + 1) * chunk).
 * eos (n_eos ids) and first_eos: per row, the first position holding an EOS id after the step, or L.
 * Returns the number of rows with masks left, -1 if L exceeds MAX_BLOCK, -2 for an unknown rule
 * (the caller checks both beforehand). */
int64_t dp_step(const float *logits, int64_t A, int64_t L, int64_t V, int64_t la, int64_t ll,
                int64_t *tokens, int64_t ta, int64_t mask_id, int32_t rule, double param,
                const int64_t *k, int8_t *left, const int64_t *hi, const int64_t *forced,
                int64_t chunk, int64_t *counts, const int64_t *eos, int64_t n_eos, int64_t *first_eos) {
    if (L > MAX_BLOCK) return -1;
    int64_t x0[MAX_BLOCK], idx[MAX_BLOCK];
    double conf[MAX_BLOCK], ent[MAX_BLOCK];
    uint8_t pick[MAX_BLOCK];
    int64_t rows_left = 0;
    for (int64_t a = 0; a < A; a++) {
        int64_t *tok = tokens + a * ta;
        int64_t lim = hi ? hi[a] : L;
        int64_t n = 0; /* positions this row may commit (masked, below lim), in window order */
        for (int64_t j = 0; j < L; j++) {
            pick[j] = 0;
            if (j >= lim || tok[j] != mask_id) continue;
            position_stats(logits + a * la + j * ll, V, mask_id, &x0[j], &conf[j], &ent[j]);
            idx[n++] = j;
        }
        if (n > 0 && (rule == ENTROPY_THRESHOLD || rule == CONFIDENCE_THRESHOLD || rule == ENTROPY_THRESHOLD_FORCED)) {
            /* Commit every certain-enough position, and always the most certain one (first on ties). */
            int64_t best = idx[0];
            for (int64_t i = 0; i < n; i++) {
                int64_t j = idx[i];
                if (rule == CONFIDENCE_THRESHOLD) {
                    pick[j] = conf[j] >= param;
                    if (conf[j] > conf[best]) best = j;
                } else {
                    pick[j] = ent[j] <= param;
                    if (ent[j] < ent[best]) best = j;
                }
            }
            pick[best] = 1;
            if (rule == ENTROPY_THRESHOLD_FORCED && forced && forced[2 * a + 1] > forced[2 * a]) {
                /* multiblock: the forced range gets its lowest-entropy position if it got nothing. */
                int64_t fa = forced[2 * a], fb = forced[2 * a + 1], got = 0, fbest = -1;
                for (int64_t j = fa; j < fb && j < L; j++) got |= pick[j];
                for (int64_t i = 0; i < n && !got; i++) {
                    int64_t j = idx[i];
                    if (j >= fa && j < fb && (fbest < 0 || ent[j] < ent[fbest])) fbest = j;
                }
                if (fbest >= 0) pick[fbest] = 1;
            }
        } else if (n > 0 && rule == TOP_K_CONFIDENCE) {
            /* The k most confident, ties to the earlier position (a stable descending sort's first k). */
            int64_t want = k[a] < n ? k[a] : n;
            for (int64_t c = 0; c < want; c++) {
                int64_t best = -1;
                for (int64_t i = 0; i < n; i++) {
                    int64_t j = idx[i];
                    if (!pick[j] && (best < 0 || conf[j] > conf[best])) best = j;
                }
                pick[best] = 1;
            }
        } else if (n > 0 && rule == ENTROPY_BOUND) {
            /* Stable insertion sort of the masked positions by entropy, then the prefix whose
             * entropies, less the largest (the current one), sum to <= gamma. The running sum
             * and the subtraction are done in the order the tensor path's cumsum does them. */
            for (int64_t i = 1; i < n; i++) {
                int64_t j = idx[i], p = i;
                while (p > 0 && ent[idx[p - 1]] > ent[j]) {
                    idx[p] = idx[p - 1];
                    p--;
                }
                idx[p] = j;
            }
            double run = 0.0;
            for (int64_t i = 0; i < n; i++) {
                int64_t j = idx[i];
                run += ent[j];
                pick[j] = run - ent[j] <= param;
            }
        } else if (n > 0) {
            return -2;
        }
        int64_t still = 0, first = L;
        for (int64_t j = 0; j < L; j++) {
            if (pick[j]) tok[j] = x0[j];
            int64_t masked = tok[j] == mask_id;
            if (j < lim) still += masked;
            if (chunk > 0) {
                if (j % chunk == 0) counts[a * (L / chunk) + j / chunk] = 0;
                counts[a * (L / chunk) + j / chunk] += masked;
            }
            for (int64_t e = 0; e < n_eos && first == L; e++)
                if (tok[j] == eos[e]) first = j;
        }
        if (first_eos) first_eos[a] = first;
        left[a] = still > 0;
        rows_left += still > 0;
    }
    return rows_left;
}
