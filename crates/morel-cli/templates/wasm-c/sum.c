/* sum, a function of {{app}}: reads a JSON array of numbers on stdin, e.g. [1, 2.5, -3], and
 * prints their sum as JSON on stdout ({"sum": 0.5, "count": 3}). A WASI command: Morel runs
 * main() once per call, the JSON body of the call on stdin. Bad input: a message on stderr and
 * exit 1, which fails the call. The parsing is deliberately small: plain numbers, nothing nested. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *message) {
    fprintf(stderr, "sum: %s\n", message);
    return 1;
}

static const char *skip_space(const char *p) {
    while (isspace((unsigned char)*p)) p++;
    return p;
}

int main(void) {
    size_t cap = 4096, len = 0;
    char *input = malloc(cap);
    if (!input) return fail("out of memory");
    size_t n;
    while ((n = fread(input + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *bigger = realloc(input, cap * 2);
            if (!bigger) return fail("out of memory");
            input = bigger;
            cap *= 2;
        }
    }
    input[len] = '\0';

    const char *p = skip_space(input);
    if (*p++ != '[') return fail("input must be a JSON array of numbers");
    double sum = 0;
    size_t count = 0;
    p = skip_space(p);
    if (*p == ']') {
        p++;
    } else {
        for (;;) {
            char *end;
            double value = strtod(p, &end);
            if (end == p) return fail("array elements must be numbers");
            sum += value;
            count++;
            p = skip_space(end);
            if (*p == ',') {
                p = skip_space(p + 1);
                continue;
            }
            if (*p++ == ']') break;
            return fail("expected ',' or ']' in the array");
        }
    }
    if (*skip_space(p) != '\0') return fail("unexpected text after the array");
    if (!isfinite(sum)) return fail("the sum is not a finite number");

    printf("{\"sum\": %.17g, \"count\": %zu}\n", sum, count);
    free(input);
    return 0;
}
