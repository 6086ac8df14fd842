/* Runs a model compiled ahead of time by `kiln compile` (see README.md beside this file).
 *
 *   main INPUT0.bin [INPUT1.bin ...]
 *
 * INPUTi.bin holds input i as raw values of its element type, little-endian, row-major
 * (for the example models: f32), exactly MODEL_INPUT_SIZES[i] bytes. Every output value is
 * printed on stdout, one per line, outputs in order; floats as "%.9g", which is enough
 * digits to recover each f32 exactly. A line per output naming it goes to stderr.
 *
 * Only the header and the object file are needed: cc main.c model.o -lm.
 */
#include "model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads exactly `size` bytes from `path`; exits with a message otherwise. */
static void *read_input(const char *path, size_t size, int index) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    void *data = malloc(size ? size : 1);
    size_t got = fread(data, 1, size, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != size || extra) {
        fprintf(stderr, "%s: input %d (\"%s\", %s) must be exactly %zu bytes\n", path, index,
                MODEL_INPUT_NAMES[index], MODEL_INPUT_TYPES[index], size);
        exit(1);
    }
    return data;
}

/* Prints `bytes` bytes of `type` elements, one per line. */
static void print_values(const void *p, const char *type, size_t bytes) {
#define PRINT(T, FMT, CAST)                                  \
    for (size_t i = 0; i < bytes / sizeof(T); i++) {         \
        T v;                                                 \
        memcpy(&v, (const char *)p + i * sizeof(T), sizeof(T)); \
        printf(FMT "\n", (CAST)v);                           \
    }
    if (!strcmp(type, "f32")) {
        PRINT(float, "%.9g", double)
    } else if (!strcmp(type, "f64")) {
        PRINT(double, "%.17g", double)
    } else if (!strcmp(type, "i8")) {
        PRINT(int8_t, "%" PRId64, int64_t)
    } else if (!strcmp(type, "u8") || !strcmp(type, "bool")) {
        PRINT(uint8_t, "%" PRIu64, uint64_t)
    } else if (!strcmp(type, "i16")) {
        PRINT(int16_t, "%" PRId64, int64_t)
    } else if (!strcmp(type, "u16")) {
        PRINT(uint16_t, "%" PRIu64, uint64_t)
    } else if (!strcmp(type, "i32")) {
        PRINT(int32_t, "%" PRId64, int64_t)
    } else if (!strcmp(type, "u32")) {
        PRINT(uint32_t, "%" PRIu64, uint64_t)
    } else if (!strcmp(type, "i64")) {
        PRINT(int64_t, "%" PRId64, int64_t)
    } else {
        PRINT(uint64_t, "%" PRIu64, uint64_t)
    }
#undef PRINT
}

int main(int argc, char **argv) {
    if (argc != 1 + MODEL_NUM_INPUTS) {
        fprintf(stderr, "usage: %s", argv[0]);
        for (int i = 0; i < MODEL_NUM_INPUTS; i++)
            fprintf(stderr, " %s.bin", MODEL_INPUT_NAMES[i]);
        fprintf(stderr, "\n");
        for (int i = 0; i < MODEL_NUM_INPUTS; i++)
            fprintf(stderr, "  input %d \"%s\": %s, %zu bytes\n", i, MODEL_INPUT_NAMES[i],
                    MODEL_INPUT_TYPES[i], MODEL_INPUT_SIZES[i]);
        return 2;
    }
    /* +1: C has no zero-length arrays, and a model may have no inputs. */
    const void *inputs[MODEL_NUM_INPUTS + 1];
    void *outputs[MODEL_NUM_OUTPUTS + 1];
    for (int i = 0; i < MODEL_NUM_INPUTS; i++)
        inputs[i] = read_input(argv[1 + i], MODEL_INPUT_SIZES[i], i);
    for (int k = 0; k < MODEL_NUM_OUTPUTS; k++)
        outputs[k] = malloc(MODEL_OUTPUT_SIZES[k] ? MODEL_OUTPUT_SIZES[k] : 1);

    /* The scratch size is a multiple of the alignment, as aligned_alloc wants. */
    size_t n = model_scratch_size();
    void *scratch = aligned_alloc(MODEL_SCRATCH_ALIGN, n ? n : MODEL_SCRATCH_ALIGN);
    if (!scratch) {
        fprintf(stderr, "cannot allocate %zu bytes of scratch memory\n", n);
        return 1;
    }
#ifdef KILN_POISON_SCRATCH
    /* The scratch needs no initialisation: fill it with NaNs to prove it. */
    memset(scratch, 0xff, n);
#endif
    int rc = model_run(inputs, outputs, scratch);
    if (rc != 0) {
        fprintf(stderr, "model_run failed with code %d\n", rc);
        return 1;
    }
    for (int k = 0; k < MODEL_NUM_OUTPUTS; k++) {
        fprintf(stderr, "output %d \"%s\": %s[", k, MODEL_OUTPUT_NAMES[k], MODEL_OUTPUT_TYPES[k]);
        for (int64_t d = 0; d < MODEL_OUTPUT_RANKS[k]; d++)
            fprintf(stderr, "%s%" PRId64, d ? "," : "", MODEL_OUTPUT_SHAPES[k][d]);
        fprintf(stderr, "]\n");
        print_values(outputs[k], MODEL_OUTPUT_TYPES[k], MODEL_OUTPUT_SIZES[k]);
        free(outputs[k]);
    }
    for (int i = 0; i < MODEL_NUM_INPUTS; i++)
        free((void *)inputs[i]);
    free(scratch);
    return 0;
}
