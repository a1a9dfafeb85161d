/**
 * The WebGPU tests as one module, for bench/gpu/prepare.sh to bundle (`deno test` runs the bundle on a machine
 * with a GPU and nothing else installed).
 *
 * @module
 */
import "../../tests/webgpu_test.ts";
import "../../tests/webgpu_kernels_test.ts";
import "../../tests/webgpu_batchnorm_test.ts";
import "../../tests/webgpu_updates_test.ts";
import "../../tests/webgpu_train_test.ts";
