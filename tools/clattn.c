/*
 * clattn: lists OpenCL devices, runs attention on .npy files, benchmarks
 * the library's variants and tunes their tiles.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: clattn COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  devices               list OpenCL platforms and devices with their index\n"
    "  run                   compute attention on .npy files\n"
    "  bench                 time the variants on random inputs\n"
    "  tune                  measure the best tiles for this device\n"
    "  help, --help          show this text\n"
    "  --version             show the library version\n"
    "\n"
    "clattn run -q Q.npy -k K.npy -v V.npy -o O.npy [options]\n"
    "  Inputs are float32 ('<f4') or float16 ('<f2') arrays of rank 4 in C order:\n"
    "  bhsd: Q [B,Hq,Lq,D], K [B,Hkv,Lk,D], V [B,Hkv,Lk,Dv]; bshd: [B,L,H,D].\n"
    "  O has the inputs' dtype and layout.\n"
    "  --variant auto|naive|tiled|window|linear\n"
    "                               (default auto: window when --window is set,\n"
    "                               else tiled; linear is linear attention,\n"
    "                               another function, with no --lse or --window)\n"
    "  --feature-map elu1|relu      linear's feature map (default elu1)\n"
    "  --causal                     causal mask, aligned bottom-right\n"
    "  --window LEFT,RIGHT          sliding window; -1 leaves a side unbounded\n"
    "  --scale S                    (default 1/sqrt(D))\n"
    "  --layout bhsd|bshd           (default bhsd)\n"
    "  --lse LSE.npy                also write the log-sum-exp [B,Hq,Lq], float32\n"
    "  --device SPEC                index, cpu, gpu or part of a device name\n"
    "  --shape auto|cpu|gpu         kernel shape (default auto: by device type)\n"
    "\n"
    "clattn bench [options]\n"
    "  Without problem options, verifies and times a default set of problems.\n"
    "  --variant auto|naive|tiled|window|linear\n"
    "                               (default: naive and tiled, and window when\n"
    "                               --window is set; linear only when asked for)\n"
    "  --feature-map elu1|relu      linear's feature map (default elu1)\n"
    "  --batch B --heads H --kv-heads H --q-len N --kv-len N\n"
    "  --head-dim D --v-head-dim D --causal --window LEFT,RIGHT\n"
    "                               problem options (defaults 1, 8, H, 1024, N,\n"
    "                               64, D, no mask)\n"
    "  --dtype f32|f16  --layout bhsd|bshd  --shape auto|cpu|gpu\n"
    "  --repeat R                   timed runs per variant (default 5)\n"
    "  --json                       one JSON object per line and result\n"
    "  --device SPEC\n"
    "  GFLOP/s counts 2*B*Hq*(D+Dv) per unmasked (query, key) pair; for linear,\n"
    "  2*B*Hkv*Lk*D*Dv + 2*B*Hq*Lq*D*Dv, plus 2*B*Hq*(D+Dv) per causal pair\n"
    "  inside a chunk of 64 keys. us/token is the median time over B*Lq.\n"
    "\n"
    "clattn tune [options]\n"
    "  Searches the tiles of the tiled kernels on the device. Each candidate is\n"
    "  checked against a float64 reference on small problems; those that pass\n"
    "  are timed on a prefill (B=1, H=8, N=2048, causal) and a decode (Lq=1,\n"
    "  Lk=4096, Hq=32, Hkv=8). The best by the geometric mean of GFLOP/s is\n"
    "  saved to the tuning database, which plans read when they are made.\n"
    "  --variant tiled|window|linear|naive\n"
    "                               (default tiled; tiled and window share;\n"
    "                               naive searches CLBlast's GEMM parameters,\n"
    "                               timed on the naive variant's GEMMs at\n"
    "                               L=256 and 2048, and saves them when they\n"
    "                               beat CLBlast's own)\n"
    "  --head-dim D[,D...]          (default 64,128; naive 64)\n"
    "  --v-head-dim D               (default: each head dim)\n"
    "  --dtype f32|f16[,...]        (default f32)\n"
    "  --budget SECONDS             no candidate starts after it (default 300);\n"
    "                               every candidate when they all fit in it,\n"
    "                               else a walk from the current choice\n"
    "  --export                     print the tuned entries as rows of the\n"
    "                               built-in table (lib/tuning.c); with\n"
    "                               --budget, after a search\n"
    "  --dry-run                    show where each search starts, and its space\n"
    "  --device SPEC\n"
    "\n"
    "clattn devices\n"
    "\n"
    "Environment: CLATTN_DEVICE, CLATTN_CACHE_DIR, CLATTN_DISABLE_CACHE,\n"
    "CLATTN_TUNING_FILE (the tuning database), CLATTN_TEST_SEED (bench and\n"
    "tune inputs).\n"
    "Exit status: 0 success, 1 failure, 2 bad command line.\n";

void cli_print_usage(void)
{
    fputs(usage, stdout);
}

int main(int argc, char **argv)
{
    const char *command = argc > 1 ? argv[1] : NULL;

    if (command == NULL)
        return cli_usage_error(NULL, "missing command");

    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 ||
        strcmp(command, "-h") == 0) {
        cli_print_usage();
        return 0;
    }
    if (strcmp(command, "--version") == 0) {
        printf("clattn %s\n", clattn_version());
        return 0;
    }

    if (strcmp(command, "devices") == 0)
        return cli_devices(argc - 2, argv + 2);
    if (strcmp(command, "run") == 0)
        return cli_run(argc - 2, argv + 2);
    if (strcmp(command, "bench") == 0)
        return cli_bench(argc - 2, argv + 2);
    if (strcmp(command, "tune") == 0)
        return cli_tune(argc - 2, argv + 2);
    return cli_usage_error(NULL, "unknown command '%s'", command);
}
