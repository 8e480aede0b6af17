// Restores that keep hand edits (GRUB's defaults, Fedora's BLS entries, Alpine's mkinitfs files), and
// runs that find their own changes already on the host (issue 10 item 2), plus the put-back after a
// failed update-grub or proxmox-boot-tool refresh (a file the run created is removed again): the
// providers' create and delete, as the Pulumi engine calls them, against the namespaced sshd test
// host. Every assertion reads the host's bytes.
import * as fs from "node:fs";
import * as path from "node:path";
import { hostFileProvider } from "../../providers/hostFile";
import { initramfsModulesProvider } from "../../providers/initramfsModules/resource";
import { kernelCmdlineProvider } from "../../providers/kernelCmdline/resource";
import { ConnectionInput } from "../../providers/ssh/connection";
import { closeAllConnections } from "../../providers/ssh/host";
import { releaseHostLocks } from "../../providers/ssh/hostLock";
import { prepareAlpineHost, referenceAlpineFiles } from "../standins/alpineHost";
import { startTestHost, TestHost } from "../testhost/testHost";

jest.setTimeout(180_000);

type Provider = typeof hostFileProvider;

let testHost: TestHost;
beforeAll(async () => {
  testHost = await startTestHost();
});
afterAll(async () => {
  await releaseHostLocks();
  await closeAllConnections();
  await testHost?.stop();
});

const onHost = (p: string) => path.join(testHost.rootfs, p);
const backupOf = (p: string) => onHost(path.join("/var/lib/vfio-host/backup", p));
const connection = (): ConnectionInput => ({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey });

/** create as the engine calls it; the outputs are what Pulumi would record as the resource's state. */
async function create(provider: Provider, inputs: Record<string, unknown>) {
  const result = await provider.create!({ connection: connection(), ...inputs });
  return { id: result.id, outs: result.outs as Record<string, unknown> };
}

/** delete as the engine calls it, with what it prints on stderr (the user sees it in `pulumi destroy`). */
async function destroy(provider: Provider, created: { id: string; outs: Record<string, unknown> }): Promise<string> {
  const printed: string[] = [];
  const spy = jest.spyOn(console, "error").mockImplementation((...args: unknown[]) => void printed.push(args.join(" ")));
  try {
    await provider.delete!(created.id, created.outs);
  } finally {
    spy.mockRestore();
  }
  return printed.join("\n");
}

describe("HostFile", () => {
  const file = "/etc/motd";

  test("destroy keeps a file edited by hand, names where the original is, and a stale backup is refused on the next create", async () => {
    const original = fs.readFileSync(onHost(file));
    const created = await create(hostFileProvider, { path: file, content: "Managed by vfio-host\n" });
    expect((created.outs.state as { sha256: string }).sha256).toMatch(/^[0-9a-f]{64}$/);
    fs.appendFileSync(onHost(file), "maintenance on Friday\n");

    const printed = await destroy(hostFileProvider, created);
    expect(fs.readFileSync(onHost(file), "utf8")).toBe("Managed by vfio-host\nmaintenance on Friday\n");
    expect(fs.readFileSync(backupOf(file)).equals(original)).toBe(true);
    expect(printed).toContain(
      `${file} NOT restored: it was changed after vfio-host wrote it, so destroy leaves it as it is. The original is kept in ` +
        `/var/lib/vfio-host/backup${file}; to put it back by hand: cp -p /var/lib/vfio-host/backup${file} ${file}`,
    );

    // The backup now belongs to other bytes than the file's: a new resource must not adopt it.
    await expect(create(hostFileProvider, { path: file, content: "Managed by vfio-host\n" })).rejects.toThrow(
      `${file} matches neither the backup an earlier vfio-host run kept nor the content to write`,
    );
    expect(fs.readFileSync(onHost(file), "utf8")).toBe("Managed by vfio-host\nmaintenance on Friday\n");

    // Following the message settles it; the file then comes back byte for byte.
    fs.copyFileSync(backupOf(file), onHost(file));
    const again = await create(hostFileProvider, { path: file, content: "Managed by vfio-host\n" });
    expect(await destroy(hostFileProvider, again)).toBe("");
    expect(fs.readFileSync(onHost(file)).equals(original)).toBe(true);
    expect(fs.existsSync(backupOf(file))).toBe(false);
  });

  test("a file it created and that was edited since stays, with the command that removes it", async () => {
    const file = "/etc/modules-load.d/restores.conf";
    const created = await create(hostFileProvider, { path: file, content: "tun\n" });
    fs.writeFileSync(onHost(file), "tun\nloop\n");
    const printed = await destroy(hostFileProvider, created);
    expect(fs.readFileSync(onHost(file), "utf8")).toBe("tun\nloop\n");
    expect(printed).toContain(
      `${file} NOT removed: it was changed after vfio-host wrote it, so destroy leaves it in place. It did not exist before ` +
        `vfio-host created it (/var/lib/vfio-host/backup${file}.absent records that); to remove it by hand: ` +
        `rm ${file} /var/lib/vfio-host/backup${file}.absent`,
    );
  });
});

describe("KernelCmdline on GRUB, with a stand-in update-grub", () => {
  const grub = "/etc/default/grub";
  const original = fs.readFileSync(path.join(__dirname, "../unit/kernelCmdline/fixtures/debian12-default-grub"));
  const args = ["intel_iommu=on", "iommu=pt"];

  beforeAll(() => {
    fs.writeFileSync(onHost(grub), original);
    fs.copyFileSync(path.join(__dirname, "../standins/update-grub"), onHost("/usr/local/sbin/update-grub"));
    fs.chmodSync(onHost("/usr/local/sbin/update-grub"), 0o755);
  });
  const failNextUpdateGrubs = (n: number) => fs.writeFileSync(onHost("/var/tmp/update-grub.failures"), `${n}\n`);

  test("a run that lost its state owns the args it finds from the backup, and destroy gives back the original bytes", async () => {
    await create(kernelCmdlineProvider, { args }); // its state is thrown away, as after kill -9
    const written = fs.readFileSync(onHost(grub), "utf8");
    expect(written).toContain('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"');

    const again = await create(kernelCmdlineProvider, { args });
    expect(fs.readFileSync(onHost(grub), "utf8")).toBe(written);
    expect((again.outs.state as { owned: { tokens: { added: string[] } } }).owned.tokens.added).toEqual(args);

    await destroy(kernelCmdlineProvider, again);
    expect(fs.readFileSync(onHost(grub)).equals(original)).toBe(true);
    expect(fs.readFileSync(onHost("/boot/grub/grub.cfg"), "utf8")).not.toContain("iommu=pt");
  });

  test("when update-grub fails, /etc/default/grub is put back and grub.cfg regenerated from it", async () => {
    fs.writeFileSync(onHost("/boot/grub/grub.cfg"), "stale\n");
    failNextUpdateGrubs(1);
    await expect(create(kernelCmdlineProvider, { args })).rejects.toThrow(
      /update-grub failed: .*failed to get canonical path of `\/dev\/root'.*; \/etc\/default\/grub was put back and \/boot\/grub\/grub\.cfg regenerated from it$/s,
    );
    expect(fs.readFileSync(onHost(grub)).equals(original)).toBe(true);
    const cfg = fs.readFileSync(onHost("/boot/grub/grub.cfg"), "utf8");
    expect(cfg).toContain("ro  quiet\n");
    expect(cfg).not.toContain("iommu");
  });

  test("when update-grub fails twice, the file is still put back and the error says both", async () => {
    failNextUpdateGrubs(2);
    const failure = await create(kernelCmdlineProvider, { args }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failure).toMatch(/^[^\n]*update-grub failed: /);
    expect(failure).toContain(
      "/etc/default/grub was put back, but running update-grub again failed too (",
    );
    expect(failure).toContain("so /boot/grub/grub.cfg may not match it; fix the cause and run update-grub by hand before rebooting");
    expect(fs.readFileSync(onHost(grub)).equals(original)).toBe(true);
  });
});

describe("KernelCmdline on proxmox-boot-tool, with a stand-in whose refresh fails", () => {
  const cmdlineFile = "/etc/kernel/cmdline";
  const tool = "/usr/local/sbin/proxmox-boot-tool";

  const grubCfg = "/boot/grub/grub.cfg";
  const grubCfgAside = `${grubCfg}.aside`;

  // Without the GRUB describe's grub.cfg: with it the host looks GRUB-booted, and the backend is rightly refused.
  beforeAll(() => {
    fs.copyFileSync(path.join(__dirname, "../standins/proxmox-boot-tool"), onHost(tool));
    fs.chmodSync(onHost(tool), 0o755);
    fs.rmSync(onHost(cmdlineFile), { force: true });
    if (fs.existsSync(onHost(grubCfg))) fs.renameSync(onHost(grubCfg), onHost(grubCfgAside));
  });
  afterAll(() => {
    fs.rmSync(onHost(tool));
    if (fs.existsSync(onHost(grubCfgAside))) fs.renameSync(onHost(grubCfgAside), onHost(grubCfg));
  });

  test("a /etc/kernel/cmdline this run created is removed again, not left holding only what the run wrote", async () => {
    const failure = await create(kernelCmdlineProvider, { args: ["intel_iommu=on", "iommu=pt"], backend: "proxmox-boot-tool" }).then(
      () => undefined,
      (err: Error) => err.message,
    );
    expect(failure).toMatch(/^proxmox-boot-tool refresh failed: .*special device \/dev\/disk\/by-uuid\/5A1C-2F3B does not exist/s);
    // The ESP stays unmountable, so the refresh after the put-back fails too, and the error says so.
    expect(failure).toContain("/etc/kernel/cmdline was put back, but running proxmox-boot-tool refresh again failed too (");
    expect(fs.existsSync(onHost(cmdlineFile))).toBe(false);
    // Its "did not exist" backup went with it: the host is as before the run, and a later run starts from there.
    expect(fs.existsSync(backupOf(cmdlineFile) + ".absent")).toBe(false);
  });
});

describe("KernelCmdline on Fedora's GRUB with BLS entries (the grubby backend)", () => {
  const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "../unit/kernelCmdline/fixtures", name), "utf8");
  const grub = "/etc/default/grub";
  const entry = "/boot/loader/entries/2d1e8f0c7b3a4e5f9a6b1c0d8e7f6a5b-6.10.6-200.fc40.x86_64.conf";
  const grubCfg = "/boot/grub/grub.cfg";
  const grubCfgAside = `${grubCfg}.aside`;
  const originalGrub = fixture("fedora40-default-grub");
  const originalEntry = fixture("fedora40-bls-entry.conf");

  // Fedora's layout: /boot/grub2/grub.cfg runs blscfg, which boots the entries; Debian's grub.cfg from the GRUB describe goes aside.
  beforeAll(() => {
    if (fs.existsSync(onHost(grubCfg))) fs.renameSync(onHost(grubCfg), onHost(grubCfgAside));
    fs.mkdirSync(onHost("/boot/grub2"), { recursive: true });
    fs.writeFileSync(onHost("/boot/grub2/grub.cfg"), "insmod blscfg\nblscfg\n");
    fs.mkdirSync(onHost(path.dirname(entry)), { recursive: true });
    fs.writeFileSync(onHost(entry), originalEntry);
    fs.writeFileSync(onHost(grub), originalGrub);
  });
  afterAll(() => {
    fs.rmSync(onHost("/boot/grub2"), { recursive: true, force: true });
    fs.rmSync(onHost("/boot/loader"), { recursive: true, force: true });
    if (fs.existsSync(onHost(grubCfgAside))) fs.renameSync(onHost(grubCfgAside), onHost(grubCfg));
  });

  test("edits GRUB_CMDLINE_LINUX and the entry, and destroy keeps an arg added by hand since (as grubby adds one) while giving the rest back", async () => {
    const created = await create(kernelCmdlineProvider, { args: ["intel_iommu=on", "iommu=pt"] });
    expect((created.outs.state as { backend: string }).backend).toBe("grubby");
    expect(fs.readFileSync(onHost(grub), "utf8")).toBe(originalGrub.replace('64G-:512M"', '64G-:512M intel_iommu=on iommu=pt"'));
    const written = originalEntry.replace("64G-:512M\n", "64G-:512M intel_iommu=on iommu=pt\n");
    expect(fs.readFileSync(onHost(entry), "utf8")).toBe(written);

    fs.writeFileSync(onHost(entry), written.replace("iommu=pt\n", "iommu=pt nomodeset\n"));
    expect(await destroy(kernelCmdlineProvider, created)).toBe("");
    expect(fs.readFileSync(onHost(grub), "utf8")).toBe(originalGrub);
    expect(fs.readFileSync(onHost(entry), "utf8")).toBe(originalEntry.replace("64G-:512M\n", "64G-:512M nomodeset\n"));
  });
});

describe("InitramfsModules on the reference Alpine host", () => {
  const conf = "/etc/mkinitfs/mkinitfs.conf";
  const feature = "/etc/mkinitfs/features.d/vfio.modules";

  beforeAll(async () => {
    await releaseHostLocks();
    await closeAllConnections();
    await prepareAlpineHost(testHost);
  });

  test("a run that lost its state owns mkinitfs.conf's vfio and the features.d file, and destroy gives back the original bytes", async () => {
    await create(initramfsModulesProvider, {}); // its state is thrown away, as after kill -9
    expect(fs.readFileSync(onHost(conf), "utf8")).toContain("vfio");
    expect(fs.existsSync(onHost(feature))).toBe(true);

    const again = await create(initramfsModulesProvider, {});
    expect(await destroy(initramfsModulesProvider, again)).not.toContain("NOT");
    expect(fs.readFileSync(onHost(conf), "utf8")).toBe(referenceAlpineFiles[conf]);
    expect(fs.existsSync(onHost(feature))).toBe(false);
  });

  test("destroy keeps a features.d file edited by hand and still gives mkinitfs.conf back", async () => {
    const created = await create(initramfsModulesProvider, {});
    fs.appendFileSync(onHost(feature), "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko*\n");
    const edited = fs.readFileSync(onHost(feature), "utf8");

    const printed = await destroy(initramfsModulesProvider, created);
    expect(fs.readFileSync(onHost(feature), "utf8")).toBe(edited);
    expect(fs.readFileSync(onHost(conf), "utf8")).toBe(referenceAlpineFiles[conf]);
    expect(printed).toContain(
      `${feature} NOT removed: it was changed after vfio-host wrote it, so destroy leaves it in place. It did not exist ` +
        `before vfio-host created it (/var/lib/vfio-host/backup${feature}.absent records that); to remove it by hand: ` +
        `rm ${feature} /var/lib/vfio-host/backup${feature}.absent, then mkinitfs 5.15.74-0-lts`,
    );
  });
});
