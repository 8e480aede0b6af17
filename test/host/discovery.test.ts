// readVfioHostFacts and discovery over real SSH, against the test host. Its /sys is an empty
// directory of its own tree (testHost.ts keeps this machine's devices out), so the test first reads
// the bare host, then writes a sysfs shaped like the lab VM into the tree (PCI devices lspci can
// read, IOMMU groups, USB buses, root filesystem on LVM, SSH on a bridge over a bond) and checks that
// every section's shell finds what was written.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { discoverHost } from "../../providers/discovery/discoverHost";
import { renderGroupConfig, renderIommuGroups, renderUsbTable } from "../../providers/discovery/render";
import { parseModulesBuiltin, parseModulesDep } from "../../providers/kernel/modules";
import { ConnectionSchema } from "../../providers/ssh/connection";
import { closeAllConnections, withHost } from "../../providers/ssh/host";
import { parseIommuGroups, parseLspci, parseUsbDevices, PciDevice } from "../../providers/vfioBinding/hostFacts";
import { readVfioHostFacts } from "../../providers/vfioBinding/readFacts";
import { installIp, TreeWriter, writePciDevices, writeUsbDevices } from "../standins/fakeSysfs";
import { startTestHost, TestHost } from "../testhost/testHost";
import { labGroups, labLspci, labUsb } from "../unit/vfioBinding/fixtures";

jest.setTimeout(120_000);

let testHost: TestHost;
beforeAll(async () => {
  testHost = await startTestHost();
}, 15 * 60_000);
afterAll(async () => {
  await closeAllConnections();
  await testHost?.stop();
});

const connection = () => ({ host: testHost.host, port: testHost.port, privateKey: testHost.privateKey, hostKey: testHost.hostKey });
const read = () => withHost(ConnectionSchema.parse(connection()), readVfioHostFacts);
const label = () => `root@${testHost.host}:${testHost.port}`;
const inTree = (p: string) => path.join(testHost.rootfs, p);
const tree = () => new TreeWriter(testHost.rootfs);
const write = (p: string, content: string | Buffer) => tree().write(p, content);
const link = (linkPath: string, target: string) => tree().link(linkPath, target);
const moduleFixture = (name: string) => fs.readFileSync(path.join(__dirname, "../unit/initramfsModules/fixtures", name), "utf8");

/** The lab fixture's USB devices, and an interface directory the loop must pass over. */
function writeLabUsb(): void {
  writeUsbDevices(tree(), labUsb);
  // Interfaces have no idVendor: the loop must pass over them.
  fs.mkdirSync(inTree("/sys/devices/pci0000:00/0000:00:1d.7/usb1/1-0:1.0"), { recursive: true });
  link("/sys/bus/usb/devices/1-0:1.0", "/sys/devices/pci0000:00/0000:00:1d.7/usb1/1-0:1.0");
}

/** / on LVM (dm-1) over dm-crypt (dm-0) on vda2, plus a whole second disk on the AHCI controller. */
function writeRootOnLvm(rootDev: string): void {
  const vda = "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda";
  const sdb = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sdb";
  write(`${vda}/vda2/partition`, "2\n");
  fs.mkdirSync(inTree(sdb), { recursive: true });
  fs.mkdirSync(inTree("/sys/devices/virtual/block/dm-0/slaves"), { recursive: true });
  link("/sys/devices/virtual/block/dm-0/slaves/vda2", `${vda}/vda2`);
  link("/sys/devices/virtual/block/dm-1/slaves/dm-0", "/sys/devices/virtual/block/dm-0");
  link("/sys/devices/virtual/block/dm-1/slaves/sdb", sdb);
  for (const [name, dir] of [["vda", vda], ["vda2", `${vda}/vda2`], ["sdb", sdb], ["dm-0", "/sys/devices/virtual/block/dm-0"], ["dm-1", "/sys/devices/virtual/block/dm-1"]]) {
    link(`/sys/class/block/${name}`, dir);
  }
  link(`/sys/dev/block/${rootDev}`, "/sys/devices/virtual/block/dm-1");
}

/** The route's eth0 as a bridge over bond0 (whose port is the virtio NIC) and a VM's tap. */
function writeSshBridge(): void {
  const nic = "/sys/devices/pci0000:00/0000:00:02.0/virtio0";
  fs.mkdirSync(inTree(`${nic}/net/enp0s2`), { recursive: true });
  link(`${nic}/net/enp0s2/device`, nic);
  for (const name of ["eth0", "bond0", "vnet0"]) fs.mkdirSync(inTree(`/sys/devices/virtual/net/${name}`), { recursive: true });
  link("/sys/devices/virtual/net/eth0/lower_bond0", "/sys/devices/virtual/net/bond0");
  link("/sys/devices/virtual/net/eth0/lower_vnet0", "/sys/devices/virtual/net/vnet0");
  link("/sys/devices/virtual/net/bond0/lower_enp0s2", `${nic}/net/enp0s2`);
  for (const name of ["eth0", "bond0", "vnet0"]) link(`/sys/class/net/${name}`, `/sys/devices/virtual/net/${name}`);
  link("/sys/class/net/enp0s2", `${nic}/net/enp0s2`);
}

/** Kernels as Debian installs them: an image per release in /boot; a removed kernel's module tree left behind. */
function writeKernels(): void {
  for (const release of ["6.1.0-9-amd64", "6.1.0-31-amd64", "6.10.1-1-amd64", "6.12.0-1-amd64"]) {
    write(`/lib/modules/${release}/modules.dep`, release === "6.10.1-1-amd64" ? moduleFixture("debian12-modules.dep") : "kernel/fs/ext4/ext4.ko:\n");
    write(`/lib/modules/${release}/modules.builtin`, release === "6.10.1-1-amd64" ? moduleFixture("debian12-modules.builtin") : "");
    if (release !== "6.12.0-1-amd64") write(`/boot/vmlinuz-${release}`, "");
  }
}

describe("readVfioHostFacts on the test host", () => {
  it("reads a bare host: no PCI devices, no groups, the running kernel, and says what it could not establish", async () => {
    const reading = await read();
    expect(reading.facts).toEqual({
      pciDevices: [],
      usbDevices: [],
      hostNeeds: [
        { kind: "mount", name: "/", what: "/ on overlay overlay", controllers: [], unresolved: ["overlay is not a block device on the host"] },
        {
          kind: "ssh",
          name: "ssh",
          what: expect.stringMatching(/^the SSH session from /),
          controllers: [],
          unresolved: ["`ip` is not installed (iproute2), so nothing names the interface it arrives on"],
        },
      ],
    });
    // The test host runs this machine's kernel, in a tree without /lib/modules.
    expect(reading).toMatchObject({ runningKernel: os.release(), kernel: { release: os.release(), loadable: {}, builtin: {} }, modprobe: "kmod" });
    expect(reading.bootId).toBe(fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
    expect(reading.cmdline).toBe(fs.readFileSync("/proc/cmdline", "utf8").trim());
    expect(reading.warnings).toEqual([]);

    const discovery = await discoverHost(connection());
    expect(discovery.warnings).toEqual([
      '/ on overlay overlay cannot be traced to PCI devices: overlay is not a block device on the host. The host needs it to boot: ' +
        'check by hand that the selection holds none of its disks\' controllers, then add "/" to `acknowledgeUnresolvedHostDevices`',
      expect.stringContaining("`ip` is not installed (iproute2), so nothing names the interface it arrives on."),
    ]);
    expect(discovery).toMatchObject({ iommuEnabled: false, groups: [], ungrouped: [], usbBuses: [] });
    expect(renderIommuGroups(discovery)).toMatch(new RegExp(`^The IOMMU is off on ${label()}`));
  });

  it("finds everything written into a lab-shaped sysfs", async () => {
    const labDevices = parseLspci(labLspci);
    const labGroupMap = parseIommuGroups(labGroups);
    writePciDevices(tree(), labDevices, labGroupMap);
    writeLabUsb();
    const rootDev = (await withHost(ConnectionSchema.parse(connection()), (host) => host.run(["mountpoint", "-d", "/"]))).stdout.trim();
    writeRootOnLvm(rootDev);
    writeSshBridge();
    const haveIp = installIp(tree());
    writeKernels();

    const reading = await read();
    const { pciDevices, usbDevices, hostNeeds } = reading.facts;
    const controllersOf = (name: string) => hostNeeds.find((need) => need.name === name)?.controllers;
    expect(pciDevices.map((d) => d.address)).toEqual(fs.readdirSync(inTree("/sys/bus/pci/devices")).sort());
    // lspci read ids, classes and drivers from the files above; names come from the tree's pci.ids.
    const essentials = ({ address, vendor, device, class: klass, driver }: PciDevice) => ({ address, vendor, device, class: klass, driver });
    expect(pciDevices.map(essentials)).toEqual(labDevices.map(essentials));
    expect(new Map(pciDevices.map((d) => [d.address, d.iommuGroup]))).toEqual(labGroupMap);
    const byPath = (a: { bus: number; vendorProduct: string }, b: typeof a) => a.bus - b.bus || a.vendorProduct.localeCompare(b.vendorProduct);
    expect([...usbDevices].sort(byPath)).toEqual(parseUsbDevices(labUsb).sort(byPath));
    expect(controllersOf("/")).toEqual(["0000:00:03.0", "0000:00:1f.2"]);
    if (haveIp) expect(controllersOf("ssh")).toEqual(["0000:00:02.0"]);
    expect(reading.kernel).toEqual({
      release: "6.10.1-1-amd64",
      loadable: parseModulesDep(moduleFixture("debian12-modules.dep")),
      builtin: parseModulesBuiltin(moduleFixture("debian12-modules.builtin")),
    });
    expect(reading.warnings).toEqual([
      `${label()}: runs kernel ${os.release()} but boots 6.10.1-1-amd64 next; its modules are the ones that count`,
    ]);

    // A login without root reads the same: nothing escalates, and /usr/sbin (modprobe) joins its PATH.
    const asDeploy = await withHost(ConnectionSchema.parse({ ...connection(), user: "deploy" }), readVfioHostFacts);
    expect({ facts: asDeploy.facts, kernel: asDeploy.kernel, modprobe: asDeploy.modprobe }).toEqual({
      facts: reading.facts,
      kernel: reading.kernel,
      modprobe: "kmod",
    });

    const discovery = await discoverHost(connection());
    expect(renderGroupConfig(discovery, 4)).toBe(
      [
        "config:",
        `  # IOMMU group 4 of ${label()}, whole: vfio-pci takes a group entirely or not at all.`,
        "  vfio-host:vfio:",
        "    devices:",
        '      - "8086:2934" # 0000:00:1d.0 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #1',
        '      - "8086:2935" # 0000:00:1d.1 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #2',
        '      - "8086:2936" # 0000:00:1d.2 USB controller: Intel Corporation 82801I (ICH9 Family) USB UHCI Controller #3',
        '      - "8086:293a" # 0000:00:1d.7 USB controller: Intel Corporation 82801I (ICH9 Family) USB2 EHCI Controller #1',
        "",
      ].join("\n"),
    );
    expect(renderUsbTable(discovery)).toBe(
      [
        "Bus  Controller    Id         Driver    IOMMU group  USB devices",
        "  1  0000:00:1d.7  8086:293a  ehci-pci            4  46f4:0001 QEMU USB HARDDRIVE",
        "  2  0000:00:1d.0  8086:2934  uhci_hcd            4  0627:0001 QEMU USB Tablet",
        "  3  0000:00:1d.1  8086:2935  uhci_hcd            4  -",
        "  4  0000:00:1d.2  8086:2936  uhci_hcd            4  -",
        "",
      ].join("\n"),
    );
  });

  it("takes Alpine's kernel image, named after the flavor, for the newest release of that flavor", async () => {
    for (const release of ["6.1.0-9-amd64", "6.1.0-31-amd64", "6.10.1-1-amd64"]) fs.rmSync(inTree(`/boot/vmlinuz-${release}`));
    write("/lib/modules/6.6.58-0-lts/modules.dep", moduleFixture("alpine-6.6-modules.dep"));
    write("/lib/modules/6.6.58-0-lts/modules.builtin", moduleFixture("alpine-6.6-modules.builtin"));
    write("/boot/vmlinuz-lts", "");
    expect((await read()).kernel).toEqual({
      release: "6.6.58-0-lts",
      loadable: parseModulesDep(moduleFixture("alpine-6.6-modules.dep")),
      builtin: parseModulesBuiltin(moduleFixture("alpine-6.6-modules.builtin")),
    });
  });
});
