/*
 * A files-mode worker for diffinv-process's tests: reads an (n, 1) float32 .npy, writes
 * y = (2 x, x + 1) as an (n, 2) .npy.
 *
 *     files_worker INPUT OUTPUT MODE MARKER
 *
 * MODE: f32 | f64 (output dtype) | noout (exit 0 without output) | shape (an (n, 3) output).
 * Row value 13: exit status 2; 7: NaN in that row; 666: hang; 667: fork a child, hang.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void hang(void) {
    for (;;) pause();
}

static float *read_npy(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) return NULL;
    size_t hlen = pre[8] | (pre[9] << 8);
    char *h = calloc(hlen + 1, 1);
    if (fread(h, 1, hlen, f) != hlen) return NULL;
    const char *s = strstr(h, "'shape': (");
    if (!s || !strstr(h, "<f4")) return NULL;
    *n = strtol(s + 10, NULL, 10);
    float *x = calloc((size_t)*n + 1, sizeof(float));
    if (fread(x, sizeof(float), (size_t)*n, f) != (size_t)*n) return NULL;
    fclose(f);
    return x;
}

static int write_npy(const char *path, const char *descr, long n, long m, const void *data,
                     size_t size) {
    char h[128];
    int len = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (%ld, %ld), }",
                       descr, n, m);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    unsigned short hl = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(h, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, size, (size_t)(n * m), f);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc < 4) return 9;
    const char *mode = argv[3];
    long n = 0;
    float *x = read_npy(argv[1], &n);
    if (!x) {
        fprintf(stderr, "files_worker: cannot read %s\n", argv[1]);
        return 8;
    }
    fprintf(stderr, "files_worker: %ld rows\n", n);
    printf("files_worker: stdout goes to the log too\n");
    fflush(stdout);
    double *y = calloc(2 * (size_t)n + 1, sizeof(double));
    float *yf = calloc(3 * (size_t)n + 1, sizeof(float));
    for (long r = 0; r < n; r++) {
        float v = x[r];
        if (v == 13.0f) {
            fprintf(stderr, "files_worker: boom on 13\n");
            return 2;
        }
        if (v == 666.0f) hang();
        if (v == 667.0f) {
            if (fork() == 0) hang();
            hang();
        }
        float a = 2.0f * v, b = v + 1.0f;
        if (v == 7.0f) a = NAN;
        y[2 * r] = a;
        y[2 * r + 1] = b;
        yf[2 * r] = a;
        yf[2 * r + 1] = b;
    }
    if (!strcmp(mode, "noout")) return 0;
    if (!strcmp(mode, "shape")) return write_npy(argv[2], "<f4", n, 3, yf, sizeof(float));
    if (!strcmp(mode, "f64")) return write_npy(argv[2], "<f8", n, 2, y, sizeof(double));
    return write_npy(argv[2], "<f4", n, 2, yf, sizeof(float));
}
