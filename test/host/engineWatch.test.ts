// An orphaned provider process (its `pulumi` CLI killed) must not hold SSH connections and the host
// lock forever: it exits once the engine address stops answering.
import { spawn } from "child_process";
import { createServer, Server } from "net";
import * as path from "path";
import { engineAddress } from "../../providers/engineWatch";

const compiled = path.join(__dirname, "../../dist/providers/engineWatch.js");

test("the engine address comes from the dynamic provider's command line only", () => {
  expect(engineAddress(["node", "/x/@pulumi/pulumi/cmd/dynamic-provider/index.js", "127.0.0.1:37013"])).toEqual({ host: "127.0.0.1", port: 37013 });
  expect(engineAddress(["node", "/x/jest.js", "127.0.0.1:37013"])).toBeUndefined();
  expect(engineAddress(["node", "/x/dynamic-provider/index.js"])).toBeUndefined();
});

/** A process that watches `port` as its engine and stays alive otherwise; resolves with its exit code and stderr. */
function watcher(port: number): { exited: Promise<{ code: number | null; stderr: string; ms: number }> } {
  const started = Date.now();
  const argv = JSON.stringify(["node", "/x/dynamic-provider/index.js", `127.0.0.1:${port}`]);
  const child = spawn(process.execPath, ["-e", `require(${JSON.stringify(compiled)}).exitWhenEngineGone(${argv}); setTimeout(() => {}, 60000)`]);
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return { exited: new Promise((resolve) => child.on("exit", (code) => resolve({ code, stderr, ms: Date.now() - started }))) };
}

test("a provider exits within seconds once its engine is gone, and not while it answers", async () => {
  const engine: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => engine.listen(0, "127.0.0.1", resolve));
  const port = (engine.address() as { port: number }).port;
  const { exited } = watcher(port);
  const early = await Promise.race([exited.then(() => "exited"), new Promise((r) => setTimeout(() => r("alive"), 12_000))]);
  expect(early).toBe("alive");
  const closedAt = Date.now();
  await new Promise((resolve) => engine.close(resolve));
  const result = await exited;
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`the Pulumi engine at 127.0.0.1:${port} is gone`);
  expect(Date.now() - closedAt).toBeLessThan(16_000);
}, 40_000);
