/**
 * oneDNN convolutions, where the library loads: the switch, why it is off, and what it computed.
 *
 * @module
 */
import { type DnnlConv, loadDnnlConv } from "./_cc.ts";
import { type ConvInfo, convParams } from "./_im2col.ts";

let dnnl: DnnlConv | undefined;

/** Why the oneDNN convolutions are not in use ("" when they are). */
export let dnnlReason = "not loaded";

/**
 * Computes convolutions with oneDNN (true) where it loads, or with im2col and
 * the BLAS (false); returns the previous setting.
 */
export function useDnnl(on: boolean): boolean {
  const before = dnnl !== undefined;
  if (on) {
    const r = loadDnnlConv();
    dnnl = r.ok ? r.conv : undefined;
    dnnlReason = r.ok ? "" : r.reason;
  } else dnnl = undefined;
  return before;
}

/** How many convolutions oneDNN computed, and how many it declined (those then go through im2col and the BLAS). */
export const dnnlCounts = { done: 0, declined: 0 };

/** Runs a convolution direction through oneDNN; false where it is off or declines (then use the BLAS). */
export function viaDnnl(
  direction: 0 | 1 | 2,
  ci: ConvInfo,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
): boolean {
  if (!dnnl || ci.batchSize === 0) return false;
  const ok = dnnl.conv(direction, fullConvParams(ci), a, b, out) === 0;
  if (ok) dnnlCounts.done++;
  else dnnlCounts.declined++;
  return ok;
}

/** im2col's params, then N OC padBottom padRight: what oneDNN's bindings and the narrow loop read. */
export function fullConvParams(ci: ConvInfo): Int32Array {
  return Int32Array.of(...convParams(ci), ci.batchSize, ci.outChannels, ci.padInfo.bottom, ci.padInfo.right);
}
