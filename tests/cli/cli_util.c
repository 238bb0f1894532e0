#include "cli_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_ARGS 64

extern char **environ;

#define PATH_SLOTS 16

static char scratch[512];
static char paths[PATH_SLOTS][CLI_PATH_MAX];
static int next_path;

int cli_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");

    (void)state;
    snprintf(scratch, sizeof scratch, "%s/clattn-cli-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    return mkdtemp(scratch) != NULL ? 0 : -1;
}

int cli_teardown(void **state)
{
    DIR *dir = opendir(scratch);
    struct dirent *entry;

    (void)state;
    if (dir == NULL)
        return -1;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            remove(cli_path(entry->d_name));
    }
    closedir(dir);
    return rmdir(scratch);
}

/* A ring of buffers, so that a few paths can be held at once. */
const char *cli_path(const char *name)
{
    char *path = paths[next_path];

    next_path = (next_path + 1) % PATH_SLOTS;
    snprintf(path, sizeof paths[0], "%s/%s", scratch, name);
    return path;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *text = malloc(cap + 1);

    assert_non_null(f);
    assert_non_null(text);
    for (;;) {
        len += fread(text + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        text = realloc(text, cap + 1);
        assert_non_null(text);
    }
    fclose(f);
    text[len] = '\0';
    return text;
}

static void redirect(posix_spawn_file_actions_t *actions, int fd, const char *path,
                     int flags)
{
    assert_int_equal(posix_spawn_file_actions_addopen(actions, fd, path, flags, 0600), 0);
}

cli_result cli_run(const char *const *args)
{
    const char *exe = getenv("CLATTN_EXE");
    char *argv[MAX_ARGS];
    char out_path[CLI_PATH_MAX], err_path[CLI_PATH_MAX];
    posix_spawn_file_actions_t actions;
    cli_result r = {0, NULL, NULL};
    pid_t pid;
    int n = 0, wstatus = 0;

    assert_non_null(exe);
    argv[n++] = (char *)exe;
    while (args[n - 1] != NULL && n < MAX_ARGS - 1) {
        argv[n] = (char *)args[n - 1];
        n++;
    }
    argv[n] = NULL;
    snprintf(out_path, sizeof out_path, "%s", cli_path("stdout.txt"));
    snprintf(err_path, sizeof err_path, "%s", cli_path("stderr.txt"));

    assert_int_equal(posix_spawn_file_actions_init(&actions), 0);
    redirect(&actions, 0, "/dev/null", O_RDONLY);
    redirect(&actions, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC);
    redirect(&actions, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC);
    assert_int_equal(posix_spawn(&pid, exe, &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);

    r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

void cli_result_free(cli_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

const char *cli_write_raw(const char *name, const void *bytes, size_t len)
{
    const char *path = cli_path(name);
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

const char *cli_write_npy_text(const char *name, const char *dict, const void *data,
                               size_t len)
{
    size_t dict_len = strlen(dict);
    size_t header = dict_len + 1;
    size_t total;
    unsigned char *bytes;

    header += (64 - (10 + header) % 64) % 64;
    total = 10 + header + len;
    bytes = malloc(total);
    assert_non_null(bytes);

    memcpy(bytes, "\x93NUMPY\x01\x00", 8);
    bytes[8] = (unsigned char)(header & 0xff);
    bytes[9] = (unsigned char)(header >> 8);
    memset(bytes + 10, ' ', header);
    memcpy(bytes + 10, dict, dict_len);
    bytes[10 + header - 1] = '\n';
    if (len > 0)
        memcpy(bytes + 10 + header, data, len);

    cli_write_raw(name, bytes, total);
    free(bytes);
    return cli_path(name);
}

const char *cli_write_zeros(const char *name, npy_dtype dtype, size_t b, size_t h,
                            size_t l, size_t d)
{
    npy_array a;
    char err[NPY_ERROR_SIZE];

    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.rank = 4;
    a.shape[0] = b;
    a.shape[1] = h;
    a.shape[2] = l;
    a.shape[3] = d;
    a.count = b * h * l * d;
    a.bytes = a.count * npy_dtype_size(dtype);
    a.data = calloc(a.bytes > 0 ? a.bytes : 1, 1);
    assert_non_null(a.data);

    if (npy_write(cli_path(name), &a, err, sizeof err) != 0)
        fail_msg("writing %s: %s", name, err);
    free(a.data);
    return cli_path(name);
}

void cli_assert_error(const cli_result *r, int status, const char *what)
{
    const char *newline = strchr(r->err, '\n');
    char prefix[CLI_PATH_MAX + 16];

    if (r->status != status || newline == NULL || newline[1] != '\0')
        fail_msg("expected status %d and one line, got %d and:\n%s", status, r->status,
                 r->err);

    snprintf(prefix, sizeof prefix, "clattn: %s", what);
    if (strncmp(r->err, prefix, strlen(prefix)) != 0)
        fail_msg("expected stderr to start with '%s', got: %s", prefix, r->err);
}
