// HostReboot remembers a boot that failed verification: the next up with the same triggers looks at
// the boot it finds instead of rebooting again. The provider runs here against a scripted host
// (withHost replaced), so what it would have run on the host is counted exactly.
import type { BootObservation, FailedVerification } from "../../../providers/reboot/resource";

interface ScriptedHost {
  bootId: string;
  /** The boot the host comes back with after a reboot command. */
  nextBootId: string;
  cmdline: string;
  drivers: Record<string, string>;
  commands: string[][];
}

const scripted: ScriptedHost = { bootId: "", nextBootId: "", cmdline: "", drivers: {}, commands: [] };

jest.mock("../../../providers/ssh/host", () => ({
  withHost: async (_connection: unknown, use: (host: unknown) => Promise<unknown>) =>
    use({
      label: "root@192.0.2.10",
      // Nothing is kept between reads: each one reaches the script.
      escalates: false,
      reads: () => new Map(),
      disconnect: async () => undefined,
      run: async (argv: string[]) => {
        scripted.commands.push(argv);
        if (argv[0] === "sh" && argv[2].includes("reboot")) scripted.bootId = scripted.nextBootId;
        const boundary = argv[1]?.startsWith("VFIO_HOST_BOUNDARY=") ? argv[1].slice("VFIO_HOST_BOUNDARY=".length) : undefined;
        if (!boundary) return { stdout: `${scripted.bootId}\n`, stderr: "", code: 0 };
        const drivers = Object.entries(scripted.drivers).map(([a, d]) => `${a} ${d}\n`).join("");
        const sections = { bootId: `${scripted.bootId}\n`, cmdline: `${scripted.cmdline}\n`, drivers, groups: "", vfioLog: "" };
        return { stdout: Object.entries(sections).map(([name, text]) => `\n${boundary} ${name}\n${text}`).join(""), stderr: "", code: 0 };
      },
    }),
}));

// The host lock is the SSH layer's (proven on the real test host in test/host/sshLayer.test.ts).
jest.mock("../../../providers/ssh/hostLock", () => ({
  lockOwner: () => "unit test",
  withHostLock: (_connection: unknown, _owner: string, fn: () => Promise<unknown>) => fn(),
}));

// Loaded after the mocks are in place.
const reboot = require("../../../providers/reboot/resource") as typeof import("../../../providers/reboot/resource");

const connection = { host: "192.0.2.10", port: 22, user: "root", hostKey: "SHA256:" + "A".repeat(43), privateKey: "key" };
const inputs = { connection, triggers: ["cmdline-v2"], expectArgs: ["intel_iommu=on"], expectVfioDevices: ["0000:00:1a.0"], timeoutSeconds: 900 };
const failed: FailedVerification = {
  bootId: "b2",
  previousBootId: "b1",
  problems: ["0000:00:1a.0: expected driver vfio-pci, found uhci_hcd"],
  at: "2026-12-01T04:00:00.000Z",
};
const olds = { ...inputs, failedVerification: failed, __provider: "serialized" };
const news = { ...inputs, __provider: "serialized" };
const rebooted = () => scripted.commands.some((argv) => argv[0] === "sh" && argv[1] === "-c" && argv[2].includes("reboot"));

beforeEach(() => Object.assign(scripted, { bootId: "b2", nextBootId: "b3", cmdline: "BOOT_IMAGE=/vmlinuz intel_iommu=on", drivers: { "0000:00:1a.0": "uhci_hcd" }, commands: [] }));

describe("decideReboot", () => {
  it("reboots for a change, looks again after a recorded failure, and otherwise does nothing", () => {
    expect(reboot.decideReboot(olds, { ...news, triggers: ["cmdline-v3"] })).toEqual({ kind: "reboot" });
    expect(reboot.decideReboot(olds, { ...news, timeoutSeconds: 60 })).toEqual({ kind: "recheck", failed });
    expect(reboot.decideReboot({ ...inputs }, news)).toEqual({ kind: "nothing" });
  });
});

describe("recheckProblems", () => {
  const observed = (bootId: string, driver: string): BootObservation => ({ bootId, cmdline: "intel_iommu=on", drivers: { "0000:00:1a.0": driver }, groups: {}, vfioLog: [] });

  it("verifies the boot found now, and says when the host has not booted since the reboot was asked for", () => {
    expect(reboot.recheckProblems(failed, observed("b3", "vfio-pci"), ["intel_iommu=on"], ["0000:00:1a.0"])).toEqual([]);
    expect(reboot.recheckProblems(failed, observed("b3", "uhci_hcd"), ["intel_iommu=on"], ["0000:00:1a.0"])).toEqual([
      "0000:00:1a.0: expected driver vfio-pci, found uhci_hcd",
    ]);
    expect(reboot.recheckProblems(failed, observed("b1", "vfio-pci"), ["intel_iommu=on"], ["0000:00:1a.0"])).toEqual([
      "the host is still on boot b1, from before the reboot asked for at 2026-12-01T04:00:00.000Z, so nothing new can be verified",
    ]);
  });
});

describe("the messages", () => {
  it("say what failed, that no reboot follows without a change, and how to retry or force one", () => {
    expect(reboot.failedBootMessage("root@192.0.2.10", failed, "again")).toBe(
      "root@192.0.2.10: the last boot (id b2) failed verification (checked 2026-12-01T04:00:00.000Z):\n" +
        "  0000:00:1a.0: expected driver vfio-pci, found uhci_hcd\n" +
        "Not rebooting again without a change: the failure is recorded in the state. Fix the cause (reboot by hand if the fix needs a boot) and " +
        "run `pulumi up` again, which checks the boot it finds; or force a new reboot with `pulumi up --replace URN` (this HostReboot's URN, from `pulumi stack --show-urns`).",
    );
    expect(reboot.failedBootMessage("root@192.0.2.10", failed, "now")).toMatch(/^root@192\.0\.2\.10 rebooted but boot b2 failed verification:\n/);
  });

  it("tell what to do with a host that did not come back", () => {
    expect(reboot.noNewBootMessage("root@192.0.2.10", 900, "b1")).toBe(
      "root@192.0.2.10 did not come back with a new boot_id within 900s (it was boot b1). Check its console and power-cycle it. " +
        "If it does not boot, pick the previous kernel arguments at the boot menu (GRUB: press e), or boot a rescue system and copy the " +
        "originals back from /var/lib/vfio-host/backup. Once it answers, run `pulumi up`: it checks the boot it finds without rebooting again, " +
        "and converges; or force a new reboot with `pulumi up --replace URN` (this HostReboot's URN, from `pulumi stack --show-urns`).",
    );
  });
});

describe("hostRebootProvider after a failed verification", () => {
  const provider = reboot.hostRebootProvider;

  it("records a reboot whose boot fails verification, keeping the last verified boot", async () => {
    Object.assign(scripted, { bootId: "b1", nextBootId: "b2" });
    const error = await provider.update!("192.0.2.10:b0", { ...inputs, triggers: ["cmdline-v1"], observed: { bootId: "b0" } }, news).catch((e: unknown) => e);
    expect(rebooted()).toBe(true);
    expect(error).toMatchObject({
      id: "192.0.2.10:b0",
      properties: { observed: { bootId: "b0" }, failedVerification: { bootId: "b2", previousBootId: "b1", problems: failed.problems } },
    });
    expect((error as Error).message).toMatch(/^root@192\.0\.2\.10 rebooted but boot b2 failed verification:\n {2}0000:00:1a\.0: expected driver vfio-pci, found uhci_hcd\nNot rebooting again/);
  });

  it("shows an update while the failure is recorded, even with nothing changed", async () => {
    expect(await provider.diff!("id", olds, news)).toEqual({ changes: true, replaces: [] });
    expect(await provider.diff!("id", { ...inputs }, news)).toEqual({ changes: false, replaces: [] });
  });

  it("does not reboot again: the same failing boot is recorded again for the engine, with the message", async () => {
    const error = await provider.update!("192.0.2.10:b1", olds, news).catch((e: unknown) => e);
    expect(rebooted()).toBe(false);
    expect(error).toMatchObject({
      id: "192.0.2.10:b1",
      reasons: [(error as Error).message],
      properties: { triggers: ["cmdline-v2"], __provider: "serialized", failedVerification: { bootId: "b2", previousBootId: "b1", problems: failed.problems } },
    });
    expect((error as Error).message).toContain("root@192.0.2.10: the last boot (id b2) failed verification");
  });

  it("succeeds and clears the failure once the boot found passes (fixed by hand and rebooted)", async () => {
    Object.assign(scripted, { bootId: "b3", drivers: { "0000:00:1a.0": "vfio-pci" } });
    const result = await provider.update!("192.0.2.10:b1", olds, news);
    expect(rebooted()).toBe(false);
    expect(result.outs).not.toHaveProperty("failedVerification");
    expect(result.outs.observed).toMatchObject({ bootId: "b3", drivers: { "0000:00:1a.0": "vfio-pci" } });
  });

  it("reads its outputs back on refresh, keeping the recorded failure", async () => {
    const result = await provider.read!("192.0.2.10:b1", { ...olds, observed: { bootId: "b0" } });
    expect(result.props).toMatchObject({ failedVerification: failed, observed: { bootId: "b2" } });
  });
});
