// Trial boots' host half on the namespaced sshd test host, for what needs no GRUB boot, no
// mkinitramfs and no reboot: cleanupTrials' put-back, commitTrial's refusal of a file edited since
// staging, and the facts readTrialRecord and readTrialSupport read. A trial is staged by hand
// (stageTrial needs grub-mkconfig), with the same writes stageTrial makes. Every assertion reads
// the test host's bytes.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { armGrubTrial, commitTrial, cleanupTrials, readTrialRecord, readTrialSupport, stagedFile, Trial } from "../../providers/bootTrial/host";
import {
  CUSTOM_CFG_PATH,
  firstMenuEntry,
  GRUBENV_PATH,
  renderTrialEntry,
  TRIAL_IMAGE_DIR,
  TRIAL_WORK_DIR,
  trialId,
  trialOnlyArgs,
} from "../../providers/bootTrial/plan";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { BACKUP_ROOT } from "../../providers/hostRecords";
import { closeAllConnections, RemoteHost, withHost } from "../../providers/ssh/host";
import { startTestHost, TestHost } from "../testhost/testHost";
import { BOOKWORM_RELEASE, bookwormGrubCfg } from "../unit/bootTrial/fixtures";

jest.setTimeout(120_000);

let testHost: TestHost;
beforeAll(async () => {
  testHost = await startTestHost();
});
afterAll(async () => {
  await closeAllConnections();
  await testHost?.stop();
});

const onHost = (p: string) => path.join(testHost.rootfs, p);
const onTestHost = <T>(fn: (host: RemoteHost) => Promise<T>) =>
  withHost(ConnectionSchema.parse({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey }), fn);
const removeOnHost = (...paths: string[]) => paths.forEach((p) => fs.rmSync(onHost(p), { recursive: true, force: true }));

/** Every file (and symlink) below these paths on the test host: its mode and the sha256 of its bytes. */
function snapshot(...roots: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const root of roots) {
    if (!fs.existsSync(onHost(root))) continue;
    const names = fs.statSync(onHost(root)).isDirectory() ? fs.readdirSync(onHost(root), { recursive: true }).map((n) => path.join(root, String(n))) : [root];
    for (const name of names) {
      const st = fs.lstatSync(onHost(name));
      if (st.isDirectory()) continue;
      const bytes = st.isSymbolicLink() ? Buffer.from(fs.readlinkSync(onHost(name))) : fs.readFileSync(onHost(name));
      out[name] = `${(st.mode & 0o7777).toString(8)} ${createHash("sha256").update(bytes).digest("hex")}`;
    }
  }
  return out;
}

/** Runs `fn` while a command is missing from the test host (renamed in its tree). */
async function withoutCommand<T>(file: string, fn: () => Promise<T>): Promise<T> {
  fs.renameSync(onHost(file), onHost(`${file}.hidden`));
  try {
    return await fn();
  } finally {
    fs.renameSync(onHost(`${file}.hidden`), onHost(file));
  }
}

/** A /boot/grub as update-grub leaves it, with no trial: bookworm's grub.cfg and an environment block with a saved entry. */
async function freshBootDir(): Promise<void> {
  removeOnHost("boot/grub", "var/lib/vfio-host", TRIAL_IMAGE_DIR);
  fs.mkdirSync(onHost("boot/grub"), { recursive: true });
  fs.writeFileSync(onHost("boot/grub/grub.cfg"), bookwormGrubCfg);
  await onTestHost(async (host) => {
    await host.run(["grub-editenv", GRUBENV_PATH, "create"]);
    await host.run(["grub-editenv", GRUBENV_PATH, "set", "saved_entry=gnulinux-simple-f1673b93-5073-478e-9a14-f725b5cfe0f2"]);
  });
}

const options = { panicSeconds: 10, watchdogSeconds: 0 };

function trialOf(files: Trial["files"], buildImage: boolean): Trial {
  return { id: trialId(files, BOOKWORM_RELEASE, buildImage, options), files, release: BOOKWORM_RELEASE, buildImage, options };
}

/**
 * What stageTrial leaves on the host, written with the same calls, less what needs GRUB's tools
 * (the menu grub-mkconfig would generate is bookworm's grub.cfg) or mkinitramfs (the image is a
 * stand-in, beside the copied initramfs-tools with the trial's hook).
 */
async function stageByHand(trial: Trial): Promise<void> {
  const dir = `${TRIAL_WORK_DIR}/${trial.id}`;
  await onTestHost(async (host) => {
    for (const file of trial.files) await host.writeFileAtomic(`${dir}/files${file.path}`, file.after);
    if (trial.buildImage) {
      await host.writeFileAtomic(`${dir}/initramfs-tools/hooks/zz-vfio-host-trial`, "#!/bin/sh\n", { mode: "0755" });
      await host.writeFileAtomic(`${TRIAL_IMAGE_DIR}/initrd.img-${trial.release}`, Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00]));
    }
    await host.writeFileAtomic(`${dir}/grub.cfg`, bookwormGrubCfg);
    const block = renderTrialEntry(firstMenuEntry(bookwormGrubCfg), trial.id, trialOnlyArgs(trial.id, trial.options), trial.release, trial.buildImage);
    await armGrubTrial(host, trial, block, "4b0f8c1e-9d2a-4c55-a1e3-2f6d7c8b9a01");
  });
}

const grubBefore = "GRUB_DEFAULT=0\n";
const grubFile = stagedFile("/etc/default/grub", grubBefore, 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"\n');
/** A modprobe.d file the trial creates. */
const vfioConf = stagedFile("/etc/modprobe.d/vfio.conf", undefined, "options vfio-pci ids=10de:1b80,10de:10f0\n");
const bootState = () => snapshot("boot", "var/lib/vfio-host");
const grubenv = () => fs.readFileSync(onHost(GRUBENV_PATH));

describe("readTrialSupport", () => {
  test("on the test host, which boots without GRUB, it says so in one sentence", async () => {
    expect(fs.existsSync(onHost("boot/grub/grub.cfg")) || fs.existsSync(onHost("etc/default/grub"))).toBe(false);
    const reason = (await onTestHost(readTrialSupport)).unsupported;
    expect(reason).toBe("its boot loader is not GRUB with /etc/default/grub and /boot/grub/grub.cfg");
    expect(reason).not.toMatch(/\n/);
  });

  test("reads every fact it needs: with GRUB's files in place the host can run trials, until the block or a command is missing", async () => {
    await freshBootDir();
    fs.copyFileSync(path.join(__dirname, "../unit/kernelCmdline/fixtures/debian12-default-grub"), onHost("etc/default/grub"));
    try {
      expect(await onTestHost(readTrialSupport)).toEqual({ loader: "grub" });
      await withoutCommand("usr/bin/grub-editenv", async () => {
        expect((await onTestHost(readTrialSupport)).unsupported).toBe("the host lacks grub-editenv");
      });
      fs.writeFileSync(onHost(GRUBENV_PATH), "");
      expect((await onTestHost(readTrialSupport)).unsupported).toBe(`${GRUBENV_PATH} is not a 1024-byte environment block (grub-editenv ${GRUBENV_PATH} create)`);
      fs.rmSync(onHost(GRUBENV_PATH));
      expect((await onTestHost(readTrialSupport)).unsupported).toBe(`${GRUBENV_PATH} is missing (grub-editenv ${GRUBENV_PATH} create)`);
    } finally {
      removeOnHost("boot/grub", "etc/default/grub");
    }
  });
});

describe("readTrialRecord", () => {
  const record = (id: string) => `${TRIAL_WORK_DIR}/${id}/record.json`;
  beforeEach(() => removeOnHost("var/lib/vfio-host"));

  test("returns the record a staged trial wrote", async () => {
    const trial = trialOf([grubFile], false);
    await freshBootDir();
    await stageByHand(trial);
    expect(await onTestHost(readTrialRecord)).toEqual({ id: trial.id, previousBootId: "4b0f8c1e-9d2a-4c55-a1e3-2f6d7c8b9a01" });
  });

  test.each([
    ["no trial directory", undefined],
    ["a trial directory without a record (staging cut short)", null],
    ["an empty record", ""],
    ["a record cut short", '{"id":"0123456789ab","previousBo'],
    ["JSON null", "null"],
    ["an id that is not a string", '{"id":12,"previousBootId":"x"}'],
    ["no previousBootId", '{"id":"0123456789ab"}'],
  ])("is undefined for %s", async (_, text) => {
    if (text !== undefined) fs.mkdirSync(onHost(`${TRIAL_WORK_DIR}/0123456789ab`), { recursive: true });
    if (typeof text === "string") fs.writeFileSync(onHost(record("0123456789ab")), text);
    expect(await onTestHost(readTrialRecord)).toBeUndefined();
  });
});

describe("cleanupTrials", () => {
  beforeEach(freshBootDir);
  const trialLeftovers = () => [TRIAL_WORK_DIR, TRIAL_IMAGE_DIR].filter((p) => fs.existsSync(onHost(p)));

  test("puts back a custom.cfg with odd bytes and no final newline byte for byte, and removes the trial's files and image", async () => {
    const custom = Buffer.concat([Buffer.from("set timeout=3\r\n# caf\u00e9\t\n"), Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]), Buffer.from("menuentry 'x' { true; }")]);
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), custom);
    const before = bootState();
    const trial = trialOf([grubFile, vfioConf], true);
    await stageByHand(trial);
    expect(fs.readFileSync(onHost(CUSTOM_CFG_PATH), "utf8")).toContain(`'vfio-host-trial-${trial.id}'`);
    expect(trialLeftovers()).toEqual([TRIAL_WORK_DIR, TRIAL_IMAGE_DIR]);

    await onTestHost(cleanupTrials);
    expect(fs.readFileSync(onHost(CUSTOM_CFG_PATH)).equals(custom)).toBe(true);
    expect(trialLeftovers()).toEqual([]);
    expect(bootState()).toEqual(before);
  });

  test("removes a custom.cfg the trial created", async () => {
    const before = bootState();
    const trial = trialOf([grubFile], false);
    await stageByHand(trial);
    expect(fs.existsSync(onHost(`${TRIAL_WORK_DIR}/${trial.id}/custom.cfg.absent`))).toBe(true);

    await onTestHost(cleanupTrials);
    expect(fs.existsSync(onHost(CUSTOM_CFG_PATH))).toBe(false);
    expect(trialLeftovers()).toEqual([]);
    expect(bootState()).toEqual(before);
  });

  test("a second run changes nothing", async () => {
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), "menuentry 'memtest' { linux16 /boot/memtest86+x64.bin }\n");
    await stageByHand(trialOf([vfioConf], true));
    await onTestHost(cleanupTrials);
    const once = bootState();
    await onTestHost(cleanupTrials);
    expect(bootState()).toEqual(once);
  });

  test("on a host without any trial it changes nothing, with or without /boot/grub", async () => {
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), "# nothing of ours\n");
    const before = bootState();
    await onTestHost(cleanupTrials);
    expect(bootState()).toEqual(before);

    removeOnHost("boot/grub", "var/lib/vfio-host");
    await onTestHost(cleanupTrials);
    expect(bootState()).toEqual({});
    expect(fs.existsSync(onHost("boot/grub"))).toBe(false);
  });

  test("clears the one-shot it set, also once GRUB used it, and keeps one somebody else set", async () => {
    const untouched = grubenv();
    const trial = trialOf([grubFile], false);
    await stageByHand(trial);
    await onTestHost(cleanupTrials);
    expect(grubenv().equals(untouched)).toBe(true);

    // GRUB's 00_header empties next_entry when it boots it (save_env writes `next_entry=`).
    await stageByHand(trial);
    await onTestHost((host) => host.run(["grub-editenv", GRUBENV_PATH, "set", "next_entry="]));
    await onTestHost(cleanupTrials);
    expect(grubenv().equals(untouched)).toBe(true);

    // grub-reboot by the admin after the trial was staged: not ours to clear.
    await stageByHand(trial);
    await onTestHost((host) => host.run(["grub-editenv", GRUBENV_PATH, "set", "next_entry=gnulinux-advanced-f1673b93-5073-478e-9a14-f725b5cfe0f2"]));
    const theirs = grubenv();
    await onTestHost(cleanupTrials);
    expect(grubenv().equals(theirs)).toBe(true);
    expect(trialLeftovers()).toEqual([]);
  });

  test("succeeds on a host without grub-editenv, and still puts custom.cfg back", async () => {
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), "# the admin's entries\n");
    await stageByHand(trialOf([grubFile], true));
    const staged = bootState();
    await withoutCommand("usr/bin/grub-editenv", () => onTestHost(cleanupTrials));
    expect(fs.readFileSync(onHost(CUSTOM_CFG_PATH), "utf8")).toBe("# the admin's entries\n");
    expect(trialLeftovers()).toEqual([]);
    // Without the tool the one-shot cannot be read or cleared (such a host cannot stage a trial either).
    expect(bootState()[GRUBENV_PATH.slice(1)]).toBe(staged[GRUBENV_PATH.slice(1)]);
  });
});

// Bugs in providers/bootTrial/host.ts: each test states the behaviour wanted and fails until it is fixed.
describe("cleanupTrials: what it once got wrong", () => {
  beforeEach(freshBootDir);

  // custom.cfg often holds `password_pbkdf2` hashes, kept 0600; the saved original once had
  // writeFileAtomic's default 0644, which cleanup's `cp -p` handed to the file it put back.
  test("a 0600 custom.cfg comes back 0600", async () => {
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), "set superusers=root\npassword_pbkdf2 root grub.pbkdf2.sha512.10000.AB\n", { mode: 0o600 });
    await stageByHand(trialOf([grubFile], false));
    expect(fs.statSync(onHost(CUSTOM_CFG_PATH)).mode & 0o777).toBe(0o600);
    await onTestHost(cleanupTrials);
    expect(fs.statSync(onHost(CUSTOM_CFG_PATH)).mode & 0o777).toBe(0o600);
  });

  // A put-back that fails (here cp, as /boot fills up) once let the loop go on: `rm -rf` deleted the
  // only saved original, and the script exited 0 with sync's status.
  test("when custom.cfg cannot be put back, it fails and keeps the saved original", async () => {
    fs.writeFileSync(onHost(CUSTOM_CFG_PATH), "# the admin's entries\n");
    const trial = trialOf([grubFile], false);
    await stageByHand(trial);
    const staged = fs.readFileSync(onHost(CUSTOM_CFG_PATH), "utf8");
    const faultyCp = onHost("usr/local/bin/cp");
    fs.writeFileSync(faultyCp, `#!/bin/sh\nshift # -p\nhead -c 5 "$1" > "$2"\necho "cp: error writing '$2': No space left on device" >&2\nexit 1\n`, { mode: 0o755 });
    let outcome: string;
    try {
      outcome = await onTestHost(cleanupTrials).then(() => "resolved", (err: Error) => `rejected: ${err.message}`);
    } finally {
      fs.rmSync(faultyCp);
    }
    expect(fs.readFileSync(onHost(CUSTOM_CFG_PATH), "utf8")).toBe(staged);
    expect({ outcome, saved: fs.existsSync(onHost(`${TRIAL_WORK_DIR}/${trial.id}/custom.cfg.orig`)) }).toEqual({
      outcome: expect.stringMatching(/^rejected: /),
      saved: true,
    });
  });
});

describe("commitTrial", () => {
  const vfioBefore = "options vfio-pci ids=10de:1b80\n";
  const grub = grubFile;
  const vfio = stagedFile(vfioConf.path, vfioBefore, vfioConf.after);
  const vfioNew = vfioConf;

  beforeEach(async () => {
    await freshBootDir();
    fs.writeFileSync(onHost("etc/default/grub"), grubBefore);
    fs.mkdirSync(onHost("etc/modprobe.d"), { recursive: true });
    fs.writeFileSync(onHost("etc/modprobe.d/vfio.conf"), vfioBefore);
  });
  afterAll(() => removeOnHost("etc/default/grub", "etc/modprobe.d/vfio.conf", "boot/grub", "var/lib/vfio-host"));

  test.each([
    ["the second file was edited", [grub, vfio], () => fs.appendFileSync(onHost(vfio.path), "options kvm ignore_msrs=1\n"), vfio.path],
    ["the first file was edited", [grub, vfio], () => fs.writeFileSync(onHost(grub.path), "GRUB_DEFAULT=saved\n"), grub.path],
    ["a file was removed", [grub, vfio], () => fs.rmSync(onHost(vfio.path)), vfio.path],
    ["a file that did not exist was created with other bytes", [grub, vfioNew], () => fs.writeFileSync(onHost(vfio.path), "blacklist nouveau\n"), vfio.path],
    [
      "one file already holds the staged bytes (a commit cut short) and the other was edited",
      [grub, vfio],
      () => {
        fs.writeFileSync(onHost(grub.path), grub.after);
        fs.writeFileSync(onHost(vfio.path), "options vfio-pci ids=8086:1533\n");
      },
      vfio.path,
    ],
  ])("refuses when %s, and writes nothing", async (_, files, edit, named) => {
    if (files.includes(vfioNew)) fs.rmSync(onHost(vfio.path));
    const trial = trialOf(files, false);
    await stageByHand(trial);
    edit();
    const before = snapshot("etc/default/grub", "etc/modprobe.d", "boot", "var/lib/vfio-host");

    const failure = await onTestHost((host) => commitTrial(host, "grub", trial, ["intel_iommu=on", "iommu=pt"])).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failure).toContain(`: ${named} changed after the trial was staged, so the trial's version is not written over it.`);
    expect(failure).not.toContain(files.find((f) => f.path !== named)!.path);
    expect(snapshot("etc/default/grub", "etc/modprobe.d", "boot", "var/lib/vfio-host")).toEqual(before);
    expect(fs.existsSync(onHost(BACKUP_ROOT))).toBe(false);
  });
});
