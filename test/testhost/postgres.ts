// A real PostgreSQL server (Debian's package) for the tests of the fleet's shared state backend: a
// cluster of its own in a temp dir, listening on 127.0.0.1 only, on a free port, with its socket in
// that dir, password logins from 127.0.0.1 and nothing else. Postgres refuses to run as root, so
// every server command runs as the `postgres` OS user (runuser). Like a test host, a watchdog stops
// the server and removes the dir when the starting process dies, and a start cleans up after runs
// whose watchdog was killed too.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { commandEnv, runCommand } from "./command";
import { processStartTime, startWatchdog } from "./watchdog";

export interface PostgresServer {
  /** The Pulumi DIY backend URL of the database: postgres://USER:PASS@127.0.0.1:PORT/DB?sslmode=disable. */
  url: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** The postmaster this start launched. */
  pid: number;
  /** The cluster's directory (data/, socket/, server.log), removed by stop(). */
  dir: string;
  /** Runs SQL through psql over TCP as the test's user; resolves with the unaligned, tuples-only output. */
  psql(sql: string): Promise<string>;
  /** pg_ctl stop -m fast of the postmaster started here, then the directory goes. */
  stop(): Promise<void>;
}

const USER = "fleet";
const DATABASE = "fleet";
const workRoot = () => path.join(os.tmpdir(), "vfio-host-postgres");

/** Debian installs each major version under /usr/lib/postgresql/<major>/bin; the newest one present. */
export function postgresBin(): string {
  const base = "/usr/lib/postgresql";
  const majors = fs.existsSync(base) ? fs.readdirSync(base).filter((name) => fs.existsSync(path.join(base, name, "bin/initdb"))) : [];
  if (majors.length === 0) throw new Error(`no PostgreSQL server under ${base}/*/bin: install Debian's postgresql (in scripts/debian-packages.txt; npm run setup installs it)`);
  return path.join(base, majors.sort((a, b) => Number(b) - Number(a))[0], "bin");
}

/**
 * Stops the cluster in $1 and removes it. The postmaster's PID is the first line of
 * data/postmaster.pid, which only a running (or crashed) server leaves; pg_ctl stop signals exactly
 * that process. -m immediate: nothing in a test cluster is worth a checkpoint.
 */
const teardownScript = (bin: string) => `
dir=$1
if [ -s "$dir/data/postmaster.pid" ]; then
  runuser -u postgres -- "${bin}/pg_ctl" stop -D "$dir/data" -m immediate -w >/dev/null 2>&1
fi
rm -rf --one-file-system "$dir"
`;

/** The owner's PID and start time, so a later start can tell a dead owner from a reused PID. */
function writeOwner(dir: string): void {
  fs.writeFileSync(path.join(dir, "owner"), `${process.pid} ${processStartTime(process.pid)}\n`);
}

/** Clusters whose starting process is gone (a crashed or killed run, watchdog and all): stopped and removed. */
export function cleanupStalePostgres(): string[] {
  if (!fs.existsSync(workRoot())) return [];
  const bin = postgresBin();
  return fs.readdirSync(workRoot()).flatMap((name) => {
    const dir = path.join(workRoot(), name);
    let owner: string[];
    try {
      owner = fs.readFileSync(path.join(dir, "owner"), "utf8").trim().split(" ");
    } catch {
      return []; // a start in progress writes its owner first
    }
    if (processStartTime(Number(owner[0])) === owner[1]) return [];
    spawnSync("sh", ["-c", teardownScript(bin), "postgres-teardown", dir], { stdio: "ignore", env: commandEnv });
    return [dir];
  });
}


/** A port nothing listens on at this moment (the server binds it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const asPostgres = (bin: string, command: string, args: string[]) => runCommand("runuser", ["-u", "postgres", "--", path.join(bin, command), ...args]);

export async function startPostgres(): Promise<PostgresServer> {
  cleanupStalePostgres();
  const bin = postgresBin();
  fs.mkdirSync(workRoot(), { recursive: true, mode: 0o755 });
  const dir = fs.mkdtempSync(path.join(workRoot(), "pg-"));
  writeOwner(dir);
  const teardown = startWatchdog("postgres-watchdog", teardownScript(bin), [dir]);
  try {
    const dataDir = path.join(dir, "data");
    const socketDir = path.join(dir, "socket");
    const password = randomBytes(12).toString("hex");
    fs.mkdirSync(socketDir);
    fs.writeFileSync(path.join(dir, "pwfile"), `${password}\n`, { mode: 0o600 });
    await runCommand("chown", ["-R", "postgres:postgres", dir]);
    fs.chmodSync(dir, 0o700);
    // The superuser is the test's user, with a password; host lines (127.0.0.1/32, ::1/128) ask for
    // it, and the socket takes no one: the URL's TCP login is the only way in.
    await asPostgres(bin, "initdb", ["-D", dataDir, "-U", USER, `--pwfile=${path.join(dir, "pwfile")}`, "--auth-host=scram-sha-256", "--auth-local=reject", "-E", "UTF8", "--no-instructions"]);
    fs.rmSync(path.join(dir, "pwfile"));
    const port = await freePort();
    fs.appendFileSync(
      path.join(dataDir, "postgresql.conf"),
      [
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        `unix_socket_directories = '${socketDir}'`,
        // A throwaway cluster on a disk the other suites share: durability buys nothing here.
        "fsync = off",
        // Twenty stacks at --parallel N each hold a few connections (the CLI's pool is 2 x cores).
        "max_connections = 200",
        "",
      ].join("\n"),
    );
    await asPostgres(bin, "pg_ctl", ["start", "-D", dataDir, "-l", path.join(dir, "server.log"), "-w", "-t", "30"]);
    const pid = Number(fs.readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    const psql = (sql: string, database = DATABASE) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(path.join(bin, "psql"), ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", USER, "-d", database, "-c", sql], {
          env: { ...commandEnv, PGPASSWORD: password, PGCONNECT_TIMEOUT: "10" },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let err = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        child.stderr.on("data", (d: Buffer) => (err += d.toString()));
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`psql -c ${JSON.stringify(sql)} failed (exit ${code}): ${err.trim()}`))));
      });
    await psql(`CREATE DATABASE ${DATABASE}`, "postgres");

    let stopping: Promise<void> | undefined;
    const startTime = processStartTime(pid);
    const stop = async () => {
      if (processStartTime(pid) === startTime) await asPostgres(bin, "pg_ctl", ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "30"]);
      // pg_ctl returns once postmaster.pid is gone, a moment before the process itself.
      for (const deadline = Date.now() + 10_000; processStartTime(pid) === startTime && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 50));
      await teardown();
    };
    return {
      url: `postgres://${USER}:${password}@127.0.0.1:${port}/${DATABASE}?sslmode=disable`,
      port,
      user: USER,
      password,
      database: DATABASE,
      pid,
      dir,
      psql: (sql) => psql(sql),
      stop: () => (stopping ??= stop()),
    };
  } catch (error) {
    await teardown();
    throw error;
  }
}
