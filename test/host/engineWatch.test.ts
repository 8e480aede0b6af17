// An orphaned provider process (its `pulumi` CLI killed) must not hold SSH connections and the host
// lock forever: it exits once the engine address stops answering. The same for the project's
// language host (scripts/pulumi-language-nodejs), which a killed CLI never closes either.
import { execFileSync, spawn } from "child_process";
import * as http2 from "http2";
import { createServer, Server } from "net";
import * as path from "path";
import { engineAddress } from "../../providers/engineWatch";
import { projectRoot } from "../../scripts/pulumiEnv";

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

test("the language host ends within seconds once its engine is gone, and not while it answers", async () => {
  // A stand-in engine: gRPC over HTTP/2 answering every call UNIMPLEMENTED (status 12, trailers
  // only), which the host's health check takes as alive, as it does with the real engine.
  const engine = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  engine.on("session", (session) => sessions.add(session));
  engine.on("stream", (stream) => stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" }, { endStream: true }));
  await new Promise<void>((resolve) => engine.listen(0, "127.0.0.1", resolve));
  const port = (engine.address() as { port: number }).port;
  // This project's host, as setup built it (an official Pulumi on PATH would bring its own).
  const bin = execFileSync("bash", [path.join(projectRoot, "scripts/build-pulumi.sh")], { encoding: "utf8" }).trim();
  const host = spawn(path.join(bin, "pulumi-language-nodejs"), [`127.0.0.1:${port}`]);
  let stdout = "";
  host.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((resolve) => host.on("exit", (code) => resolve(code)));
  try {
    const early = await Promise.race([exited.then(() => "exited"), new Promise((r) => setTimeout(() => r("alive"), 12_000))]);
    expect(early).toBe("alive");
    expect(stdout).toMatch(/^\d+\n/); // it served: the port line the engine reads
    const closedAt = Date.now();
    engine.close();
    for (const session of sessions) session.destroy();
    const ended = await Promise.race([exited, new Promise((r) => setTimeout(() => r("still running"), 15_000))]);
    expect(ended).toBe(0);
    expect(Date.now() - closedAt).toBeLessThan(12_000);
  } finally {
    if (host.exitCode === null) host.kill("SIGKILL"); // started by this test, by its PID
    engine.close();
  }
}, 40_000);
