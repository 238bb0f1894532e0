/*
 * The program cache: reuse within a context, binaries on disk shared between
 * contexts, corrupt files rejected and replaced, and the switches that turn
 * the disk cache off.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

typedef void (*file_fn)(const char *path, off_t size, void *cookie);

/* Calls fn on every regular file under dir, then removes dir itself when
 * remove is set (after fn removed the files). */
static void walk(const char *dir, file_fn fn, void *cookie, int remove)
{
    DIR *d = opendir(dir);
    struct dirent *entry;

    if (!d)
        return;
    while ((entry = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;

        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name) >=
                (int)sizeof(path) ||
            lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(path, fn, cookie, remove);
        else if (S_ISREG(st.st_mode))
            fn(path, st.st_size, cookie);
    }
    closedir(d);
    if (remove)
        rmdir(dir);
}

static void count_file(const char *path, off_t size, void *cookie)
{
    (void)path;
    (void)size;
    ++*(int *)cookie;
}

static int count_files(const char *dir)
{
    int n = 0;

    walk(dir, count_file, &n, 0);
    return n;
}

static void remove_file(const char *path, off_t size, void *cookie)
{
    (void)size;
    (void)cookie;
    unlink(path);
}

/* The first file is cut to half its length; every other one keeps its length
 * but gets pseudo-random bytes. */
static void corrupt_file(const char *path, off_t size, void *cookie)
{
    int *seen = cookie;
    uint64_t x = harness_seed + (uint64_t)*seen;
    FILE *f;

    if ((*seen)++ == 0) {
        assert_int_equal(truncate(path, size / 2), 0);
        return;
    }
    f = fopen(path, "wb");
    assert_non_null(f);
    for (off_t i = 0; i < size; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        fputc((int)(x >> 56), f);
    }
    fclose(f);
}

static clattn_context *make_context(const char *dir, int disable)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;

    clattn_context_options_init(&options);
    options.cache_dir = dir;
    options.disable_disk_cache = disable;
    options.log = harness_log;
    EXPECT_OK(NULL, clattn_context_create(&ctx, &options));
    return ctx;
}

static clattn_stats stats_of(clattn_context *ctx)
{
    clattn_stats s;

    EXPECT_OK(ctx, clattn_context_stats(ctx, &s));
    printf("stats: compiled %llu, from disk %llu, from memory %llu, rejected %llu\n",
           (unsigned long long)s.programs_compiled,
           (unsigned long long)s.programs_from_disk,
           (unsigned long long)s.programs_from_memory,
           (unsigned long long)s.disk_entries_rejected);
    return s;
}

/* Two problems that share compile-time options, and one that does not. */
static void desc_x(clattn_desc *d)
{
    clattn_desc_init(d);
    d->q_len = 50;
    d->head_dim = 64;
    d->causal = 1;
    d->want_lse = 1;
    d->variant = CLATTN_VARIANT_TILED;
    d->kernel_shape = CLATTN_SHAPE_CPU;
}

static void desc_x_resized(clattn_desc *d)
{
    desc_x(d);
    d->batch = 2;
    d->q_heads = 6;
    d->kv_heads = 3;
    d->q_len = 33;
    d->kv_len = 77;
}

static void desc_y(clattn_desc *d)
{
    desc_x(d);
    d->head_dim = 32;
    d->causal = 0;
    d->want_lse = 0;
}

static void check(clattn_context *ctx, void (*make)(clattn_desc *))
{
    clattn_desc d;

    make(&d);
    harness_check(ctx, &d);
}

static void temp_dir(char *buf, size_t size)
{
    const char *base = getenv("TMPDIR");

    snprintf(buf, size, "%s/clattn-cache-test-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(buf));
}

/* Context A compiles and writes; returns how many programs it compiled. */
static uint64_t fill_cache(const char *dir)
{
    clattn_context *a = make_context(dir, 0);
    clattn_stats first, second, third;

    check(a, desc_x);
    first = stats_of(a);
    assert_true(first.programs_compiled > 0);
    assert_int_equal(first.programs_from_disk, 0);
    assert_true(count_files(dir) > 0);

    /* Only lengths, batch and heads differ: nothing new to compile. */
    check(a, desc_x_resized);
    second = stats_of(a);
    assert_int_equal(second.programs_compiled, first.programs_compiled);
    assert_true(second.programs_from_memory > first.programs_from_memory);

    check(a, desc_y);
    third = stats_of(a);
    assert_true(third.programs_compiled > second.programs_compiled);
    clattn_context_destroy(a);
    return third.programs_compiled;
}

static void disk_cache_round_trip(void **state)
{
    char dir[4096];
    clattn_context *ctx;
    clattn_stats s;
    int seen = 0;

    (void)state;
    temp_dir(dir, sizeof(dir));
    printf("cache in %s\n", dir);
    uint64_t compiled = fill_cache(dir);

    /* Context B finds the binaries on disk. */
    ctx = make_context(dir, 0);
    check(ctx, desc_x);
    s = stats_of(ctx);
    assert_int_equal(s.programs_compiled, 0);
    assert_true(s.programs_from_disk > 0);
    assert_int_equal(s.disk_entries_rejected, 0);
    clattn_context_destroy(ctx);

    /* Context C rejects damaged files, rebuilds and replaces them. */
    walk(dir, corrupt_file, &seen, 0);
    printf("damaged %d files\n", seen);
    ctx = make_context(dir, 0);
    check(ctx, desc_x);
    check(ctx, desc_y);
    s = stats_of(ctx);
    assert_true(s.disk_entries_rejected > 0);
    assert_int_equal(s.programs_compiled, compiled);
    assert_int_equal(s.programs_from_disk, 0);
    clattn_context_destroy(ctx);

    /* Context D loads what C wrote. */
    ctx = make_context(dir, 0);
    check(ctx, desc_x);
    check(ctx, desc_y);
    s = stats_of(ctx);
    assert_int_equal(s.programs_compiled, 0);
    assert_int_equal(s.programs_from_disk, compiled);
    assert_int_equal(s.disk_entries_rejected, 0);
    clattn_context_destroy(ctx);

    walk(dir, remove_file, NULL, 1);
}

static void disabled_by_option(void **state)
{
    char dir[4096];
    clattn_context *ctx;

    (void)state;
    temp_dir(dir, sizeof(dir));
    ctx = make_context(dir, 1);
    check(ctx, desc_y);
    assert_true(stats_of(ctx).programs_compiled > 0);
    clattn_context_destroy(ctx);
    assert_int_equal(count_files(dir), 0);
    walk(dir, remove_file, NULL, 1);
}

static void disabled_by_environment(void **state)
{
    char dir[4096];
    clattn_context *ctx;

    (void)state;
    temp_dir(dir, sizeof(dir));
    setenv("CLATTN_DISABLE_CACHE", "1", 1);
    ctx = make_context(dir, 0);
    unsetenv("CLATTN_DISABLE_CACHE");
    check(ctx, desc_y);
    assert_true(stats_of(ctx).programs_compiled > 0);
    clattn_context_destroy(ctx);
    assert_int_equal(count_files(dir), 0);

    /* "0" leaves the cache on. */
    setenv("CLATTN_DISABLE_CACHE", "0", 1);
    ctx = make_context(dir, 0);
    unsetenv("CLATTN_DISABLE_CACHE");
    check(ctx, desc_y);
    clattn_context_destroy(ctx);
    assert_true(count_files(dir) > 0);
    walk(dir, remove_file, NULL, 1);
}

/* A decode loop makes a plan per step with a growing key count. */
static void decode_loop_never_recompiles(void **state)
{
    clattn_stats before, after;
    clattn_desc d;

    (void)state;
    clattn_desc_init(&d);
    d.q_heads = 8;
    d.kv_heads = 2;
    d.q_len = 1;
    d.kv_len = 1;
    d.head_dim = 64;
    d.causal = 1;
    d.want_lse = 1;
    d.variant = CLATTN_VARIANT_TILED;
    harness_check(harness_ctx, &d);
    before = stats_of(harness_ctx);

    for (d.kv_len = 2; d.kv_len < 200; d.kv_len += 37)
        harness_check(harness_ctx, &d);
    after = stats_of(harness_ctx);
    assert_int_equal(after.programs_compiled, before.programs_compiled);
    assert_int_equal(after.programs_from_disk, before.programs_from_disk);
    assert_true(after.programs_from_memory >= before.programs_from_memory + 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disk_cache_round_trip),
        cmocka_unit_test(disabled_by_option),
        cmocka_unit_test(disabled_by_environment),
        cmocka_unit_test(decode_loop_never_recompiles),
    };

    return cmocka_run_group_tests_name("cache", tests, harness_setup, harness_teardown);
}
