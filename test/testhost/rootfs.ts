import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { holdFileLock } from "../../scripts/lab/labState";
import { runCommand } from "./command";

/** Where built artefacts live, outside the checkout so a fresh clone reuses them. */
export function vfioHostCacheDir(): string {
  return process.env.VFIO_HOST_CACHE || path.join(os.homedir(), ".cache", "vfio-host");
}

/**
 * Everything that decides the tree's content. Its hash names the cached tree, so editing any of
 * it (or the machine's apt sources) builds a new one instead of reusing a stale one.
 */
const recipe = {
  suite: "bookworm",
  variant: "minbase",
  packages: [
    "openssh-server",
    "coreutils",
    "kmod",
    "pciutils",
    "sudo",
    "procps",
    "grub2-common", // update-grub; it depends on grub-common (grub-mkconfig)
    "initramfs-tools", // update-initramfs (initramfs-tools-core alone has only mkinitramfs)
  ],
  // Documentation is a third of a minbase tree, and nothing on a test host reads it.
  dpkgOptions: ["path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/locale/*"],
  // mmdebstrap runs a hook as `sh -c HOOK exec TARGET`, so "$1" is the tree (mmdebstrap(1), HOOKS).
  customizeHook: [
    "set -e",
    // A password of '*' is "no password" but not "locked": sshd refuses public keys for locked accounts without PAM.
    "chroot \"$1\" useradd --create-home --shell /bin/bash --password '*' deploy",
    "echo 'deploy ALL=(ALL) NOPASSWD: ALL' > \"$1/etc/sudoers.d/deploy\"",
    "chmod 0440 \"$1/etc/sudoers.d/deploy\"",
    "install -d -m 0700 \"$1/root/.ssh\"",
    "chroot \"$1\" install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh",
    // Each test host gets its own host key; the ones openssh-server's postinst made would be shared.
    "rm -f \"$1\"/etc/ssh/ssh_host_*",
    // mmdebstrap copies this machine's name; sudo warns when the name does not resolve.
    "echo testhost > \"$1/etc/hostname\"",
    "printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\ttesthost\\n' > \"$1/etc/hosts\"",
  ].join("\n"),
};

/** The machine's apt source files, passed to mmdebstrap as they are: it pastes an existing file given as MIRROR. */
function aptSourceFiles(): string[] {
  const dir = "/etc/apt/sources.list.d";
  const listed = fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((name) => /\.(list|sources)$/.test(name)).sort().map((name) => path.join(dir, name))
    : [];
  const files = ["/etc/apt/sources.list", ...listed].filter((file) => fs.existsSync(file) && fs.statSync(file).size > 0);
  if (files.length === 0) {
    throw new Error("No apt sources on this machine (/etc/apt/sources.list or /etc/apt/sources.list.d/*.sources): the test host rootfs needs a Debian mirror.");
  }
  return files;
}

/** `rm -rf` that never crosses into another mount: a leaked bind mount of /dev or /sys must not be emptied. */
async function removeTree(dir: string): Promise<void> {
  await runCommand("rm", ["-rf", "--one-file-system", dir]);
}

async function ensureMmdebstrap(): Promise<void> {
  try {
    await runCommand("mmdebstrap", ["--version"]);
  } catch {
    console.error("[testhost] installing mmdebstrap (listed in scripts/debian-packages.txt)");
    await runCommand("apt-get", ["install", "-y", "--no-install-recommends", "mmdebstrap"], { stderr: "inherit" });
  }
}

/**
 * Returns the cached test-host root filesystem, building it first if needed; one process builds
 * it, the others wait for it. The tree is built under a temporary name and renamed when complete,
 * so a crashed build is never used.
 */
export async function ensureTestHostRootfs(): Promise<string> {
  const sources = aptSourceFiles();
  const hash = createHash("sha256")
    .update(JSON.stringify(recipe))
    .update(sources.map((file) => file + "\n" + fs.readFileSync(file, "utf8")).join("\n"))
    .digest("hex")
    .slice(0, 12);
  const cache = vfioHostCacheDir();
  const rootfs = path.join(cache, `testhost-rootfs-${hash}`);
  if (fs.existsSync(rootfs)) return rootfs;
  fs.mkdirSync(cache, { recursive: true });
  // npm test runs suites in lanes at once: on a cold cache two needed the tree together, both built
  // it (twice the CPU), and one's hook timed out. One builds it; the others wait, then find it.
  const release = await holdFileLock(`${rootfs}.lock`);
  try {
    return fs.existsSync(rootfs) ? rootfs : await buildRootfs(rootfs, cache, hash, sources);
  } finally {
    release();
  }
}

/** Builds the tree of the recipe whose hash is `hash` into `rootfs` (its caller holds the lock). */
async function buildRootfs(rootfs: string, cache: string, hash: string, sources: string[]): Promise<string> {
  // Half-built trees of builders that died: a live builder would hold the lock.
  for (const name of fs.readdirSync(cache)) {
    if (name.startsWith(`testhost-rootfs-${hash}.tmp-`)) await removeTree(path.join(cache, name));
  }

  await ensureMmdebstrap();
  const building = `${rootfs}.tmp-${process.pid}`;
  const started = Date.now();
  console.error(`[testhost] building ${rootfs} with mmdebstrap (once; cached by recipe hash)`);
  try {
    await runCommand(
      "mmdebstrap",
      [
        `--variant=${recipe.variant}`,
        `--include=${recipe.packages.join(",")}`,
        ...recipe.dpkgOptions.map((option) => `--dpkgopt=${option}`),
        `--customize-hook=${recipe.customizeHook}`,
        recipe.suite,
        building,
        ...sources,
      ],
      { stderr: "inherit" },
    );
    fs.renameSync(building, rootfs);
  } catch (error) {
    await removeTree(building);
    throw error;
  }
  console.error(`[testhost] rootfs built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return rootfs;
}

// `node dist/test/testhost/rootfs.js`: npm test builds the tree as the first stage of a lane, before the suites need it.
if (require.main === module) {
  ensureTestHostRootfs().then(
    (rootfs) => console.log(rootfs),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
