// A `pulumi` CLI killed with SIGKILL leaves its provider plugins running (each has a process group
// of its own), and an orphaned provider would go on holding its SSH connections and the host lock
// (ssh/hostLock.ts) until someone finds it. So the provider process watches the engine address it
// was started with and exits once the engine stops answering; the host lock dies with it.
import { connect } from "net";

const WATCH_INTERVAL_MS = 5_000;
/** Refused connections in a row before the engine counts as gone (one may be a restart race). */
const MISSES_BEFORE_EXIT = 2;

/** `host:port` from the dynamic provider's command line (`node .../dynamic-provider/index.js 127.0.0.1:PORT`). */
export function engineAddress(argv: readonly string[]): { host: string; port: number } | undefined {
  if (!/dynamic-provider/.test(argv[1] ?? "")) return undefined;
  const match = /^(.+):(\d+)$/.exec(argv[2] ?? "");
  return match ? { host: match[1], port: Number(match[2]) } : undefined;
}

export function exitWhenEngineGone(argv: readonly string[] = process.argv): void {
  const engine = engineAddress(argv);
  if (!engine) return;
  let misses = 0;
  const timer = setInterval(() => {
    const socket = connect(engine);
    socket.once("connect", () => {
      misses = 0;
      socket.destroy();
    });
    socket.once("error", (err: Error & { code?: string }) => {
      socket.destroy();
      if (err.code !== "ECONNREFUSED" || ++misses < MISSES_BEFORE_EXIT) return;
      console.error(`vfio-host: the Pulumi engine at ${engine.host}:${engine.port} is gone; this provider exits and gives back its host locks`);
      process.exit(1);
    });
  }, WATCH_INTERVAL_MS);
  timer.unref();
}
