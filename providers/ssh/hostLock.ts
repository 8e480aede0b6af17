// One lock per host: every change a run makes (file writes, bootloader and initramfs rebuilds,
// reboots) happens while this process holds it, so two runs against one host (two stacks, two
// laptops) never interleave their read-plan-write or run update-grub at the same time. The lock is
// flock(1) on a file under /run/lock, held by a shell tied to an SSH channel: it dies with its
// holder (the run ends, the process is killed, the connection drops) and with the host's boot.
// Within the run, the resources on one host take turns: the engine runs independent resources at
// once, and two rebuilds at once can break each other (update-extlinux run while mkinitfs has
// removed the image it is rewriting leaves an extlinux.conf without INITRD).
import { AsyncLocalStorage } from "node:async_hooks";
import * as os from "os";
import { Connection, connectionLabel } from "./connection";
import { forgetReads, HeldCommand, holdCommand } from "./host";

export const LOCK_PATH = "/run/lock/vfio-host.lock";
/** How long a run waits for another run's lock before it gives up. */
export const LOCK_WAIT_SECONDS = 120;
const HEARTBEAT_MS = 10_000;
const LOCK_BUSY_EXIT = 75;

// $1: seconds to wait, $2: who we are. Busybox's flock has no -w, hence the loop. The holder
// answers "waiting <holder>" once, then "locked", or "busy <holder>" when the wait runs out. It then
// reads heartbeats; a holder whose client went silent for a minute or two (a link that died without
// closing) is ended by its own watchdog, so the lock never outlives its run.
const LOCK_SCRIPT = `lock=${LOCK_PATH}; holder=$lock.holder; beat=$lock.beat
mkdir -p -- "\${lock%/*}"
exec 9>>"$lock"
waited=0
until flock -n 9; do
  [ "$waited" -gt 0 ] || echo "waiting $(cat -- "$holder" 2>/dev/null)"
  waited=$((waited + 1))
  if [ "$waited" -gt "$1" ]; then echo "busy $(cat -- "$holder" 2>/dev/null)"; exit ${LOCK_BUSY_EXIT}; fi
  sleep 1
done
printf '%s\\n' "$2" > "$holder"
: > "$beat"
( while sleep 30; do [ -n "$(find "$beat" -mmin -2 2>/dev/null)" ] || { kill $$; exit 0; }; kill -0 $$ 2>/dev/null || exit 0; done ) 9>&- >/dev/null 2>&1 &
echo locked
while IFS= read -r _; do : > "$beat"; done`;

export class HostLockBusyError extends Error {}

interface HeldLock {
  command: HeldCommand;
  heartbeat: NodeJS.Timeout;
  /** False once the holder ended: the host rebooted or the connection dropped. */
  alive: boolean;
}

const held = new Map<string, Promise<HeldLock>>();
/** Per host: the end of the last turn handed out. */
const turns = new Map<string, Promise<void>>();
/** The hosts whose turn the current call chain holds, so that a nested withHostLock does not wait for itself. */
const turnsHeld = new AsyncLocalStorage<ReadonlySet<string>>();

/** Who holds the lock, as the waiting run shows it: the stack, user@machine, process, since when. */
export function lockOwner(stack: string | undefined): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry for this uid (a container): the uid is still informative.
    user = String(process.getuid?.() ?? "unknown");
  }
  return `${stack ? `stack ${stack}, ` : ""}${user}@${os.hostname()} pid ${process.pid}, since ${new Date().toISOString()}`;
}

/**
 * Runs `fn` while this process holds the host's lock, and while no other `fn` of this process runs
 * on that host. The first caller takes the lock and this process keeps it until it exits (or the
 * host reboots): the resources of one run share it, one at a time; a second run waits up to
 * LOCK_WAIT_SECONDS and then fails naming the holder.
 */
export async function withHostLock<T>(connection: Connection, owner: string, fn: () => Promise<T>): Promise<T> {
  const key = connectionLabel(connection);
  if (turnsHeld.getStore()?.has(key)) return fn();
  await acquire(connection, owner);
  return inTurn(key, async () => {
    // Another run, or another resource of this one, may have changed the host: plan from fresh reads.
    forgetReads(connection);
    return fn();
  });
}

async function inTurn<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = turns.get(key) ?? Promise.resolve();
  let done!: () => void;
  const mine = new Promise<void>((resolve) => (done = resolve));
  const end = before.then(() => mine);
  turns.set(key, end);
  await before;
  try {
    return await turnsHeld.run(new Set([...(turnsHeld.getStore() ?? []), key]), fn);
  } finally {
    done();
    if (turns.get(key) === end) turns.delete(key);
  }
}

async function acquire(connection: Connection, owner: string): Promise<void> {
  const key = connectionLabel(connection);
  let entry = held.get(key);
  if (entry) {
    const lock = await entry.catch(() => undefined);
    // A lock whose holder ended (the host rebooted, the connection dropped) is taken again.
    if (!lock?.alive) entry = undefined;
  }
  if (!entry) {
    entry = takeLock(connection, owner);
    held.set(key, entry);
    entry.catch(() => {
      if (held.get(key) === entry) held.delete(key);
    });
  }
  await entry;
}

async function takeLock(connection: Connection, owner: string): Promise<HeldLock> {
  const label = connectionLabel(connection);
  const command = await holdCommand(connection, ["sh", "-c", LOCK_SCRIPT, "vfio-host-lock", String(LOCK_WAIT_SECONDS), owner]);
  for (;;) {
    const { value, done } = await command.lines.next();
    if (done) throw new Error(`${label}: could not take the host lock ${LOCK_PATH} (the lock command ended without an answer)`);
    if (value === "locked") break;
    if (value.startsWith("waiting ")) {
      console.error(`${label}: waiting up to ${LOCK_WAIT_SECONDS}s for another run on this host (${value.slice(8) || "holder unknown"})`);
    } else if (value.startsWith("busy ")) {
      throw new HostLockBusyError(
        `${label}: another run holds the host lock ${LOCK_PATH} (${value.slice(5) || "holder unknown"}) and did not ` +
          `release it within ${LOCK_WAIT_SECONDS}s; nothing was changed. Let that run finish (or stop it) and run this again`,
      );
    }
  }
  const lock: HeldLock = { command, heartbeat: setInterval(() => command.write("\n"), HEARTBEAT_MS), alive: true };
  lock.heartbeat.unref();
  void command.closed.then(() => {
    lock.alive = false;
    clearInterval(lock.heartbeat);
  });
  return lock;
}

/** Gives the locks back (tests; a process that exits gives them back anyway). */
export async function releaseHostLocks(): Promise<void> {
  const entries = [...held.values()];
  held.clear();
  await Promise.all(
    entries.map(async (entry) => {
      const lock = await entry.catch(() => undefined);
      if (!lock) return;
      clearInterval(lock.heartbeat);
      lock.command.release();
      await lock.command.closed;
    }),
  );
}
