/*
 * A diffinv worker in C: 2 inputs, 5 outputs, plain float arithmetic.
 *
 *     cc -std=c99 -O2 -I crates/process/c crates/process/c/examples/example.c -o example_worker
 *
 * and in the run's config file:
 *
 *     [forward]
 *     kind = "process"
 *     command = ["./example_worker"]
 *     in_dim = 2
 *     out_dim = 5
 *
 * The tests of diffinv-process compile this file and check that the pool's results are
 * bit-identical to the same arithmetic evaluated in-process. A row with |x0| > 1e6 is reported
 * as failed (NaN), to show how a simulator marks one bad row.
 */
#include <math.h>
#include <stdio.h>

#include "diffinv_worker.h"

static int model(const float *x, float *y, int rows, void *ctx) {
    (void)ctx;
    for (int r = 0; r < rows; r++) {
        float a = x[2 * r], b = x[2 * r + 1];
        float *o = y + 5 * r;
        if (fabsf(a) > 1e6f) {
            for (int j = 0; j < 5; j++) o[j] = NAN; /* this row failed */
            continue;
        }
        o[0] = a * b;
        o[1] = a + 2.0f * b;
        o[2] = a * a - b;
        o[3] = (a - b) / (1.0f + a * a);
        o[4] = b * b * b - 0.5f * a;
    }
    return 0;
}

int main(void) {
    fprintf(stderr, "example worker: serving in_dim 2, out_dim 5\n");
    return diffinv_serve(2, 5, model, NULL);
}
