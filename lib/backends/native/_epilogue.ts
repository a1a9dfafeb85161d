/**
 * The epilogue of the fused convolution and matrix product kernels: a bias add and an activation, in place.
 *
 * @module
 */
import { type Info, type NativeBackend } from "./_backend.ts";
import { allFloat, bits, reluBits, sizeOf, values } from "./_helpers.ts";

type Activation = "linear" | "relu" | "relu6" | "leakyrelu" | "elu" | "sigmoid" | "prelu";

/** Whether `bias` (or prelu weights) can be applied per last-axis channel or as a scalar. */
function perChannel(t: Info | undefined, channels: number): boolean {
  if (t === undefined) return true;
  const n = sizeOf(t.shape);
  if (n === 1) return true;
  if (n !== channels || t.shape.length === 0) return false;
  return t.shape[t.shape.length - 1] === channels;
}

/** Whether {@link epilogue} covers this bias, activation and prelu weights. */
export function epilogueSupported(
  bias: Info | undefined,
  prelu: Info | undefined,
  activation: string | undefined,
  channels: number,
): boolean {
  if (!allFloat(bias, prelu)) return false;
  if (!perChannel(bias, channels)) return false;
  switch (activation ?? "linear") {
    case "linear":
    case "relu":
    case "relu6":
    case "leakyrelu":
    case "elu":
    case "sigmoid":
      return true;
    case "prelu":
      return prelu !== undefined && perChannel(prelu, channels);
    default:
      return false;
  }
}

/** y += bias (per channel or scalar), then the activation, in place. */
export function epilogue(
  backend: NativeBackend,
  y: Float32Array,
  channels: number,
  bias: Info | undefined,
  activation: string | undefined,
  leakyAlpha: number,
  prelu: Info | undefined,
): void {
  const n = y.length;
  if (bias) {
    const b = values(backend, bias);
    if (b.length === 1) {
      const v = b[0];
      for (let i = 0; i < n; i++) y[i] += v;
    } else {
      for (let i = 0; i < n; i += channels) {
        for (let c = 0; c < channels; c++) y[i + c] += b[c];
      }
    }
  }
  switch ((activation ?? "linear") as Activation) {
    case "linear":
      return;
    case "relu":
      reluBits(bits(y), bits(y));
      return;
    case "relu6":
      for (let i = 0; i < n; i++) y[i] = y[i] < 0 ? 0 : y[i] > 6 ? 6 : y[i];
      return;
    case "leakyrelu":
      for (let i = 0; i < n; i++) if (y[i] < 0) y[i] *= leakyAlpha;
      return;
    case "elu":
      for (let i = 0; i < n; i++) if (y[i] < 0) y[i] = Math.exp(y[i]) - 1;
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-y[i]));
      return;
    case "prelu": {
      const a = values(backend, prelu as Info);
      if (a.length === 1) {
        const v = a[0];
        for (let i = 0; i < n; i++) if (y[i] < 0) y[i] *= v;
      } else {
        for (let i = 0; i < n; i += channels) {
          for (let c = 0; c < channels; c++) if (y[i + c] < 0) y[i + c] *= a[c];
        }
      }
      return;
    }
  }
}
