/**
 * An exclusive lock on a model folder, so that one process at a time trains
 * into it. It is an advisory lock (`Deno.FsFile.lock`, flock on Unix) on the
 * file `<dir>/lock`: the kernel drops it when the holding process ends, however
 * it ends (kill -9 included), so a stale lock never blocks anyone. The file
 * holds the holder's PID, for the waiting message of the next process.
 *
 * @module
 */

/** A held lock; {@link FolderLock.release} lets the next waiter in. */
export interface FolderLock {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock (once). */
  release(): Promise<void>;
}

/**
 * Takes the lock of folder `dir` (which must exist), waiting as long as another
 * process (or another open in this one) holds it. When the lock is not granted
 * within `noticeMs` milliseconds, `onWait` is called once with the holder's PID
 * as recorded in the lock file ("another process" when it recorded none).
 */
export async function lockFolder(
  dir: string,
  onWait?: (holder: string) => void,
  noticeMs = 200,
): Promise<FolderLock> {
  const path = `${dir}/lock`;
  const file = await Deno.open(path, { write: true, create: true });
  try {
    const locked = file.lock(true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const slow = new Promise<"slow">((resolve) => (timer = setTimeout(() => resolve("slow"), noticeMs)));
    const first = await Promise.race([locked.then(() => "locked" as const), slow]);
    clearTimeout(timer);
    if (first === "slow") {
      const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
      onWait?.(holder || "another process");
      await locked;
    }
  } catch (e) {
    file.close();
    throw e;
  }
  try {
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch { /* a full disk: the lock holds without the note */ }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      await file.truncate(0).catch(() => {});
      try {
        await file.unlock();
      } finally {
        file.close();
      }
    },
  };
}
