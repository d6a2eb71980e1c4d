/* The Lotka-Volterra predator-prey system, as a diffinv worker in C.
 *
 *   dx/dt = alpha x - beta x y        (prey)
 *   dy/dt = delta x y - gamma y       (predators)
 *
 * The unknown is theta = (alpha, beta, gamma, delta); the measurement is (x, y) at t = 1.5, 3,
 * ..., 15 (20 values) from x(0) = 10, y(0) = 5. Classical fourth-order Runge-Kutta with a fixed
 * step 0.01, in single precision. A row whose populations leave [0, 1e6] (a parameter set
 * without a bounded cycle) comes back as NaN: diffinv counts it as a failed row.
 *
 * Build: cc -O2 -std=c99 -ffp-contract=off -I../../../process/c lotka_volterra.c -o lotka_volterra
 */
#include "diffinv_worker.h"

#include <math.h>

#define STEPS_PER_OBS 150
#define N_OBS 10

static void field(const float *p, float x, float y, float *dx, float *dy) {
    *dx = p[0] * x - p[1] * x * y;
    *dy = p[3] * x * y - p[2] * y;
}

/* One row: theta (4 values) -> 20 values (x then y at each observation time). */
static void simulate(const float *p, float *out) {
    float x = 10.0f, y = 5.0f;
    const float h = 0.01f;
    for (int k = 0; k < N_OBS; k++) {
        for (int s = 0; s < STEPS_PER_OBS; s++) {
            float ax, ay, bx, by, cx, cy, dx, dy;
            field(p, x, y, &ax, &ay);
            field(p, x + 0.5f * h * ax, y + 0.5f * h * ay, &bx, &by);
            field(p, x + 0.5f * h * bx, y + 0.5f * h * by, &cx, &cy);
            field(p, x + h * cx, y + h * cy, &dx, &dy);
            x = x + h / 6.0f * (ax + 2.0f * bx + 2.0f * cx + dx);
            y = y + h / 6.0f * (ay + 2.0f * by + 2.0f * cy + dy);
            if (!(x >= 0.0f && x <= 1e6f && y >= 0.0f && y <= 1e6f)) {
                for (int j = 0; j < 2 * N_OBS; j++) out[j] = NAN;
                return;
            }
        }
        out[2 * k] = x;
        out[2 * k + 1] = y;
    }
}

static int forward(const float *x, float *y, int rows, void *ctx) {
    (void)ctx;
    for (int i = 0; i < rows; i++) simulate(x + 4 * i, y + 2 * N_OBS * i);
    return 0;
}

int main(void) { return diffinv_serve(4, 2 * N_OBS, forward, NULL); }
