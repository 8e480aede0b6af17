import fc from "fast-check";
import { describeModprobeChanges, parseModprobeConf, renderModprobeConf } from "../../../providers/vfioBinding/modprobeConf";

const REFERENCE_IDS = ["8086:3a67", "8086:3a68", "8086:3a69", "8086:3a6c"];

describe("renderModprobeConf", () => {
  it("writes the reference host's file, with softdeps for the USB drivers rather than a NIC driver", () => {
    expect(renderModprobeConf({ ids: REFERENCE_IDS, softdepDrivers: ["ehci_pci", "uhci_hcd"], allowUnsafeInterrupts: true })).toBe(
      [
        "# Managed by vfio-host (Pulumi VfioBinding): binds the selected PCI devices to vfio-pci at boot.",
        "# Changes here are overwritten on the next `pulumi up`.",
        "options vfio-pci ids=8086:3a67,8086:3a68,8086:3a69,8086:3a6c",
        "options vfio_iommu_type1 allow_unsafe_interrupts=1",
        "softdep ehci_pci pre: vfio-pci",
        "softdep uhci_hcd pre: vfio-pci",
        "",
      ].join("\n"),
    );
  });

  it("binds by address through driver_override in an install command", () => {
    expect(
      renderModprobeConf({ bindBy: "address", addresses: ["0000:04:00.0"], softdepDrivers: ["e1000e"], allowUnsafeInterrupts: false, header: "test" }),
    ).toBe(
      [
        "# test",
        "# vfio-pci claims only these addresses: loading it first writes its name into their driver_override.",
        "install vfio-pci for dev in 0000:04:00.0; do echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override; done; /sbin/modprobe --ignore-install vfio-pci $CMDLINE_OPTS",
        "softdep e1000e pre: vfio-pci",
        "",
      ].join("\n"),
    );
  });
});

describe("parseModprobeConf", () => {
  it("reads a hand-written file: comments, continuations, odd spacing, dashes or underscores", () => {
    const text = [
      "# vfio for the USB controllers",
      "options   vfio_pci \\",
      "    ids=8086:3A67,8086:3a68 disable_vga=1",
      "options vfio-pci ids=8086:3a67,8086:3a68,8086:3a69",
      "\toptions vfio_iommu_type1 allow_unsafe_interrupts=Y",
      "softdep igb pre: vfio-pci",
      "softdep ehci_pci pre: vfio_pci post: foo",
      "blacklist nouveau",
      "",
    ].join("\n");
    expect(parseModprobeConf(text)).toEqual({
      ids: ["8086:3a67", "8086:3a68", "8086:3a69"],
      addresses: [],
      softdepDrivers: ["igb", "ehci_pci"],
      allowUnsafeInterrupts: true,
      options: { vfio_pci: ["ids=8086:3A67,8086:3a68", "disable_vga=1", "ids=8086:3a67,8086:3a68,8086:3a69"], vfio_iommu_type1: ["allow_unsafe_interrupts=Y"] },
      softdeps: [
        { module: "igb", pre: ["vfio-pci"], post: [] },
        { module: "ehci_pci", pre: ["vfio_pci"], post: ["foo"] },
      ],
      installs: {},
      other: ["blacklist nouveau"],
    });
  });
});

const hex4 = fc.stringMatching(/^[0-9a-f]{4}$/);
const hex2 = fc.stringMatching(/^[0-9a-f]{2}$/);
const spec = fc.record({
  ids: fc.uniqueArray(fc.tuple(hex4, hex4).map(([v, d]) => `${v}:${d}`), { minLength: 1, maxLength: 6 }),
  addresses: fc.uniqueArray(fc.tuple(hex2, hex2, fc.integer({ min: 0, max: 7 })).map(([b, s, f]) => `0000:${b}:${s}.${f}`), { minLength: 1, maxLength: 4 }),
  softdepDrivers: fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9_]{1,10}$/), { maxLength: 4 }),
  allowUnsafeInterrupts: fc.boolean(),
  byAddress: fc.boolean(),
});

describe("modprobe conf properties", () => {
  it("parse(render(spec)) gives back the spec", () => {
    fc.assert(
      fc.property(spec, ({ ids, addresses, softdepDrivers, allowUnsafeInterrupts, byAddress }) => {
        const common = { softdepDrivers, allowUnsafeInterrupts };
        const text = renderModprobeConf(byAddress ? { ...common, bindBy: "address", addresses } : { ...common, ids });
        expect(parseModprobeConf(text)).toMatchObject({
          ids: byAddress ? [] : ids,
          addresses: byAddress ? addresses : [],
          softdepDrivers,
          allowUnsafeInterrupts,
          other: [],
        });
        expect(describeModprobeChanges(text, text)).toEqual([]);
      }),
    );
  });
});

describe("describeModprobeChanges", () => {
  const next = renderModprobeConf({ ids: REFERENCE_IDS, softdepDrivers: ["ehci_pci", "uhci_hcd"], allowUnsafeInterrupts: true });

  it("creates a missing file", () => {
    expect(describeModprobeChanges(undefined, next)).toEqual([
      "create /etc/modprobe.d/vfio.conf",
      "ids: + 8086:3a67",
      "ids: + 8086:3a68",
      "ids: + 8086:3a69",
      "ids: + 8086:3a6c",
      "softdep: + ehci_pci",
      "softdep: + uhci_hcd",
      "allow_unsafe_interrupts: 0 -> 1",
    ]);
  });

  it("turns the reference steps' file into ours, naming each difference", () => {
    const reference = [
      "options vfio-pci ids=8086:3a67,8086:3a68,8086:3a69,8086:3a6c",
      "options vfio_iommu_type1 allow_unsafe_interrupts=1",
      "softdep igb pre: vfio-pci",
      "",
    ].join("\n");
    expect(describeModprobeChanges(reference, next)).toEqual(["softdep: - igb", "softdep: + ehci_pci", "softdep: + uhci_hcd"]);
  });

  it("names lines a user added by hand", () => {
    expect(describeModprobeChanges(`${next}options vfio-pci disable_vga=1\n`, next)).toEqual(["line: - options vfio-pci disable_vga=1"]);
  });

  it("says when only comments differ", () => {
    expect(describeModprobeChanges(next.replace("Managed", "managed"), next)).toEqual(["rewrite /etc/modprobe.d/vfio.conf (only comments or layout differ)"]);
  });
});
