import { createServer, type Server } from "node:net";

// Hook runs are serialized with an abstract Unix socket. Only one process in
// a network namespace can listen on a given abstract name, and the kernel
// frees the name when that process exits, even after SIGKILL. So a killed
// holder can never wedge later runs. Abstract names belong to the network
// namespace, which matches the scope of everything the lock protects.
const LOCK_NAME = "\0splitroute.lock";
const RETRY_MS = 50;

/** Waits for the lock, up to `timeoutMs`, and returns a function that releases it. */
export async function acquireLock(timeoutMs = 60_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = await tryListen();
    if (server !== undefined) {
      return () => new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for another splitroute run in this network namespace to finish`);
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

function tryListen(): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") {
        resolve(undefined);
      } else {
        reject(error);
      }
    });
    server.listen({ path: LOCK_NAME }, () => {
      // The lock must not keep the process alive once the work is done.
      server.unref();
      resolve(server);
    });
  });
}
