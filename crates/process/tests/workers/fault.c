/*
 * The fault worker of diffinv-process's tests: a correct worker (in_dim 1, out_dim 2,
 * y = (2 x, x + 1)) with a fault for some input values, and start-up faults by mode.
 *
 *     fault MODE MARKER [STATE_FILE]
 *
 * MODE: ok | nohello | version | dims | banner | exit | once | env | idle-exit
 * MARKER is ignored (the tests find their processes by it in /proc/PID/cmdline).
 *
 * Faults by row value (any mode that serves):
 *   7: NaN in that row        8: +inf in that row        13: exit(3) after a stderr line
 *   21: a reply with one row too many                     22: garbage on stdout
 *   23: an error reply        24: a header line over 64 KiB
 *   31: SIGSEGV               50: sleep 50 ms
 *   666: hang                 667: fork a child that hangs, then hang
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diffinv_worker.h"

static void hang(void) {
    for (;;) pause();
}

static void nap_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int model(const float *x, float *y, int rows, void *ctx) {
    (void)ctx;
    for (int r = 0; r < rows; r++) {
        float v = x[r];
        y[2 * r] = 2.0f * v;
        y[2 * r + 1] = v + 1.0f;
        if (v == 7.0f) y[2 * r] = NAN;
        if (v == 8.0f) y[2 * r + 1] = INFINITY;
        if (v == 13.0f) {
            fprintf(stderr, "fault: boom on 13\n");
            fflush(stderr);
            exit(3);
        }
        if (v == 21.0f) {
            printf("{\"status\": \"ok\", \"rows\": %d, \"out_dim\": 2}\n", rows + 1);
            fflush(stdout);
            return 0;
        }
        if (v == 22.0f) {
            printf("garbage!\n");
            fflush(stdout);
            return 0;
        }
        if (v == 23.0f) {
            diffinv_set_error("value 23 is \"unlucky\"");
            return 1;
        }
        if (v == 24.0f) {
            for (int i = 0; i < 70000; i++) putchar('x');
            fflush(stdout);
            hang();
        }
        if (v == 31.0f) raise(SIGSEGV);
        if (v == 50.0f) nap_ms(50);
        if (v == 666.0f) {
            fprintf(stderr, "fault: hanging\n");
            fflush(stderr);
            hang();
        }
        if (v == 667.0f) {
            if (fork() == 0) hang();
            fprintf(stderr, "fault: forked a child, hanging\n");
            fflush(stderr);
            hang();
        }
    }
    return 0;
}

static int env_model(const float *x, float *y, int rows, void *ctx) {
    (void)x;
    (void)ctx;
    const char *id = getenv("DIFFINV_WORKER_ID");
    const char *extra = getenv("FAULT_EXTRA");
    const char *d = getenv("DIFFINV_IN_DIM");
    const char *m = getenv("DIFFINV_OUT_DIM");
    const char *p = getenv("DIFFINV_PROTOCOL");
    int sane = d && m && p && !strcmp(d, "1") && !strcmp(m, "2") && !strcmp(p, "1");
    for (int r = 0; r < rows; r++) {
        y[2 * r] = id ? (float)atof(id) : -1.0f;
        y[2 * r + 1] = (extra ? (float)atof(extra) : 0.0f) +
                       (access("probe.txt", F_OK) == 0 ? 1000.0f : 0.0f) + (sane ? 0.0f : -1e6f);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    fprintf(stderr, "fault: starting in mode %s\n", mode);
    fflush(stderr);
    if (!strcmp(mode, "nohello")) hang();
    if (!strcmp(mode, "version")) {
        printf("{\"protocol\": 2, \"in_dim\": 1, \"out_dim\": 2}\n");
        fflush(stdout);
        hang();
    }
    if (!strcmp(mode, "dims")) {
        printf("{\"protocol\": 1, \"in_dim\": 3, \"out_dim\": 2}\n");
        fflush(stdout);
        hang();
    }
    if (!strcmp(mode, "banner")) {
        printf("Loading mesh...\n");
        fflush(stdout);
        hang();
    }
    if (!strcmp(mode, "exit")) {
        fprintf(stderr, "fault: cannot load mesh.dat\n");
        return 1;
    }
    if (!strcmp(mode, "once")) {
        /* The first start serves; every later start fails before its hello. */
        const char *state = argc > 3 ? argv[3] : "fault-once.state";
        if (access(state, F_OK) == 0) {
            fprintf(stderr, "fault: restart refused\n");
            return 4;
        }
        FILE *f = fopen(state, "w");
        if (f) fclose(f);
    }
    if (!strcmp(mode, "idle-exit")) {
        /* Answer one call, then exit as soon as the reply is out. */
        printf("{\"protocol\": 1, \"in_dim\": 1, \"out_dim\": 2}\n");
        fflush(stdout);
        char line[256];
        if (!fgets(line, sizeof line, stdin)) return 0;
        long rows = diffinv__json_int(line, "rows");
        float *x = calloc((size_t)rows + 1, sizeof(float));
        float *y = calloc(2 * (size_t)rows + 1, sizeof(float));
        if (fread(x, sizeof(float), (size_t)rows, stdin) != (size_t)rows) return 5;
        model(x, y, (int)rows, NULL);
        printf("{\"status\": \"ok\", \"rows\": %ld, \"out_dim\": 2}\n", rows);
        fwrite(y, sizeof(float), 2 * (size_t)rows, stdout);
        fflush(stdout);
        fprintf(stderr, "fault: leaving after one call\n");
        return 0;
    }
    if (!strcmp(mode, "env")) return diffinv_serve(1, 2, env_model, NULL);
    return diffinv_serve(1, 2, model, NULL);
}
