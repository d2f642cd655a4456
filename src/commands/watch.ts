import { monitorRoutes } from "../system/monitor.js";
import type { Context } from "./context.js";
import { refresh } from "./refresh.js";

// Route changes come in bursts (a DHCP renewal replaces several routes), so
// one refresh runs after the burst has been quiet this long.
const SETTLE_MS = 500;

/**
 * Follows route changes and refreshes the bypass table after each burst,
 * until SIGTERM or SIGINT. Changes in our own table are ignored, since
 * refresh makes them. Refresh failures are logged and watching goes on.
 */
export async function watch(context: Context): Promise<void> {
  const { log, store } = context;
  const ownTable = (await store.read())?.table.id ?? context.config.table.id;
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();

  const monitor = monitorRoutes((line) => {
    if (new RegExp(`\\btable (${ownTable}|${context.config.table.name})\\b`).test(line)) {
      return;
    }
    log.debug(`route change: ${line}`);
    clearTimeout(timer);
    timer = setTimeout(() => {
      running = running.then(() => refresh(context)).catch((error: unknown) => log.error(`refresh failed: ${(error as Error).message}`));
    }, SETTLE_MS);
  });
  log.info("watching route changes; the bypass table follows main (stop with Ctrl-C or SIGTERM)");

  const stop = () => {
    clearTimeout(timer);
    monitor.stop();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await monitor.exited;
  await running;
  log.info("stopped watching route changes");
}
