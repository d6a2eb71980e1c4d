/*
 * diffinv_worker.h: the worker side of diffinv's process protocol (version 1), for simulators
 * written in C or C++. One header, C99, no dependencies beyond the C library.
 *
 *     #include "diffinv_worker.h"
 *
 *     static int model(const float *x, float *y, int rows, void *ctx) {
 *         for (int r = 0; r < rows; r++) {          // x: rows x 2, y: rows x 1, row-major
 *             y[r] = x[2 * r] * x[2 * r + 1];
 *         }
 *         return 0;
 *     }
 *
 *     int main(void) { return diffinv_serve(2, 1, model, NULL); }
 *
 * diffinv_serve() writes the hello line, then answers every call diffinv sends until stdin
 * closes (return value 0), or a protocol error (a message on stderr, non-zero return value).
 *
 * The callback gets `rows` rows of `in_dim` floats in `x` and fills `rows` rows of `out_dim`
 * floats in `y` (zero on entry), both row-major. Failure semantics:
 *   - a row the callback leaves with a NaN (or an infinity) fails alone, the others are kept;
 *   - a non-zero return value fails every row of the call with an error reply; the message is
 *     the one given to diffinv_set_error() during the call, else "forward callback returned N".
 *     The worker keeps serving;
 *   - crashing (exit, abort, a signal) fails the rows of the call; diffinv restarts the worker.
 *
 * stdout belongs to the protocol: write diagnostics to stderr (they go to diffinv's worker log).
 * See docs/simulators.md for the protocol itself.
 */
#ifndef DIFFINV_WORKER_H
#define DIFFINV_WORKER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The protocol version this header speaks. */
#define DIFFINV_PROTOCOL_VERSION 1
/* The longest header line, newline included. */
#define DIFFINV_MAX_HEADER 65536

/* The callback: `rows` rows of `in_dim` values in `x`, `rows` rows of `out_dim` values to
 * write in `y`; 0 for success, anything else for an error reply. */
typedef int (*diffinv_forward_fn)(const float *x, float *y, int rows, void *ctx);

static inline char *diffinv__error_buffer(void) {
    static char message[1024];
    return message;
}

/* Set the message of the error reply for the current call (copied, cut at 1023 bytes). Call
 * it from the callback, then return non-zero. */
static inline void diffinv_set_error(const char *message) {
    char *buf = diffinv__error_buffer();
    strncpy(buf, message ? message : "", 1023);
    buf[1023] = '\0';
}

/* Read one line (without '\n') into buf; its length, -1 at end of input, -2 if too long. */
static inline long diffinv__read_line(FILE *in, char *buf, size_t cap) {
    size_t n = 0;
    int c;
    while ((c = fgetc(in)) != EOF) {
        if (c == '\n') {
            if (n > 0 && buf[n - 1] == '\r') n--;
            buf[n] = '\0';
            return (long)n;
        }
        if (n + 1 >= cap) return -2;
        buf[n++] = (char)c;
    }
    return -1;
}

/* The non-negative integer value of "key" in a flat JSON object, or -1. */
static inline long diffinv__json_int(const char *line, const char *key) {
    size_t klen = strlen(key);
    const char *p = line;
    while ((p = strchr(p, '"')) != NULL) {
        if (strncmp(p + 1, key, klen) == 0 && p[klen + 1] == '"') {
            const char *q = p + klen + 2;
            while (*q == ' ' || *q == '\t') q++;
            if (*q != ':') return -1;
            q++;
            while (*q == ' ' || *q == '\t') q++;
            if (*q < '0' || *q > '9') return -1;
            return strtol(q, NULL, 10);
        }
        p++;
    }
    return -1;
}

static inline int diffinv__little_endian(void) {
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static inline void diffinv__swap32(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4], s[4];
        memcpy(b, &v[i], 4);
        s[0] = b[3]; s[1] = b[2]; s[2] = b[1]; s[3] = b[0];
        memcpy(&v[i], s, 4);
    }
}

/* Write `s` as a JSON string body (quotes and control characters escaped). */
static inline void diffinv__json_escape(FILE *out, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
}

/* Serve diffinv's protocol on stdin/stdout until stdin closes (returns 0), or a protocol
 * error (returns 2, message on stderr) or a write error (returns 3). */
static inline int diffinv_serve(int in_dim, int out_dim, diffinv_forward_fn forward, void *ctx) {
    FILE *in = stdin, *out = stdout;
    char *line = (char *)malloc(DIFFINV_MAX_HEADER);
    float *x = NULL, *y = NULL;
    size_t cap = 0;
    int rc = 0;
    int le = diffinv__little_endian();
    if (!line || in_dim <= 0 || out_dim <= 0) {
        fprintf(stderr, "diffinv_serve: bad arguments or out of memory\n");
        free(line);
        return 2;
    }
    fprintf(out, "{\"protocol\": %d, \"in_dim\": %d, \"out_dim\": %d}\n",
            DIFFINV_PROTOCOL_VERSION, in_dim, out_dim);
    fflush(out);
    for (;;) {
        long len = diffinv__read_line(in, line, DIFFINV_MAX_HEADER);
        if (len == -1) break; /* stdin closed: done */
        if (len == -2) {
            fprintf(stderr, "diffinv_serve: request header longer than %d bytes\n",
                    DIFFINV_MAX_HEADER);
            rc = 2;
            break;
        }
        long rows = diffinv__json_int(line, "rows");
        long d = diffinv__json_int(line, "in_dim");
        if (rows < 0 || rows > 0x7fffffffL || d != in_dim) {
            fprintf(stderr, "diffinv_serve: bad request header: %.200s\n", line);
            rc = 2;
            break;
        }
        size_t nx = (size_t)rows * (size_t)in_dim, ny = (size_t)rows * (size_t)out_dim;
        if ((size_t)rows > cap) {
            free(x);
            free(y);
            x = (float *)malloc(nx * sizeof(float) + 1);
            y = (float *)malloc(ny * sizeof(float) + 1);
            cap = (size_t)rows;
            if (!x || !y) {
                fprintf(stderr, "diffinv_serve: out of memory for %ld rows\n", rows);
                rc = 2;
                break;
            }
        }
        if (fread(x, sizeof(float), nx, in) != nx) {
            fprintf(stderr, "diffinv_serve: input cut short\n");
            rc = 2;
            break;
        }
        if (!le) diffinv__swap32(x, nx);
        memset(y, 0, ny * sizeof(float));
        diffinv_set_error("");
        int r = forward(x, y, (int)rows, ctx);
        if (r != 0) {
            const char *msg = diffinv__error_buffer();
            fputs("{\"status\": \"error\", \"message\": \"", out);
            if (msg[0]) diffinv__json_escape(out, msg);
            else fprintf(out, "forward callback returned %d", r);
            fputs("\"}\n", out);
        } else {
            fprintf(out, "{\"status\": \"ok\", \"rows\": %ld, \"out_dim\": %d}\n", rows, out_dim);
            if (!le) diffinv__swap32(y, ny);
            fwrite(y, sizeof(float), ny, out);
        }
        if (fflush(out) != 0 || ferror(out)) {
            rc = 3;
            break;
        }
    }
    free(line);
    free(x);
    free(y);
    return rc;
}

#endif /* DIFFINV_WORKER_H */
