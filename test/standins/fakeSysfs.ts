// A fake but lspci-readable sysfs written into a test host's tree (whose /sys is an empty directory
// of its own): PCI devices with their config space, drivers and IOMMU groups, USB devices under
// their controllers, the root filesystem's disk and the NIC of the SSH session. Each function writes
// what the fact-gathering shell of providers/vfioBinding/readFacts.ts follows, and nothing else.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { PciDevice } from "../../providers/vfioBinding/hostFacts";
import { commandEnv } from "../testhost/command";

/** Writes inside one tree (a test host's rootfs as this machine sees it). */
export class TreeWriter {
  constructor(readonly tree: string) {}

  inTree(p: string): string {
    return path.join(this.tree, p);
  }

  write(p: string, content: string | Buffer, mode?: number): void {
    fs.mkdirSync(path.dirname(this.inTree(p)), { recursive: true });
    fs.writeFileSync(this.inTree(p), content);
    if (mode !== undefined) fs.chmodSync(this.inTree(p), mode);
  }

  /** A relative symlink at `linkPath` to `target`, both paths inside the tree, as sysfs makes them. */
  link(linkPath: string, target: string): void {
    fs.mkdirSync(path.dirname(this.inTree(linkPath)), { recursive: true });
    fs.symlinkSync(path.relative(path.dirname(linkPath), target), this.inTree(linkPath));
  }
}

const pciDir = (address: string) => `/sys/devices/pci0000:00/${address}`;

/** The 256-byte config space lspci reads a device's header from (PCI Local Bus spec, type 0 header). */
function configSpace(d: PciDevice): Buffer {
  const config = Buffer.alloc(256);
  config.writeUInt16LE(parseInt(d.vendor, 16), 0x00);
  config.writeUInt16LE(parseInt(d.device, 16), 0x02);
  config.writeUInt16LE(parseInt(d.class, 16), 0x0a);
  return config;
}

/** PCI devices (e.g. parsed from an `lspci -Dnnk` fixture) with driver links and IOMMU groups. */
export function writePciDevices(t: TreeWriter, devices: readonly PciDevice[], groups: ReadonlyMap<string, number>): void {
  for (const d of devices) {
    const dir = pciDir(d.address);
    t.write(`${dir}/vendor`, `0x${d.vendor}\n`);
    t.write(`${dir}/device`, `0x${d.device}\n`);
    t.write(`${dir}/class`, `0x${d.class}00\n`);
    t.write(`${dir}/irq`, "0\n");
    t.write(`${dir}/resource`, "0x0000000000000000 0x0000000000000000 0x0000000000000000\n".repeat(13));
    t.write(`${dir}/config`, configSpace(d));
    if (d.driver) {
      fs.mkdirSync(t.inTree(`/sys/bus/pci/drivers/${d.driver}`), { recursive: true });
      t.link(`${dir}/driver`, `/sys/bus/pci/drivers/${d.driver}`);
    }
    t.link(`/sys/bus/pci/devices/${d.address}`, dir);
    const group = groups.get(d.address);
    if (group !== undefined) t.link(`/sys/kernel/iommu_groups/${group}/devices/${d.address}`, dir);
  }
}

/**
 * USB devices from lines "<resolved sysfs path> <idVendor>:<idProduct> <product>" (the format
 * parseUsbDevices reads), linked from /sys/bus/usb/devices like the kernel does.
 */
export function writeUsbDevices(t: TreeWriter, lines: string): void {
  for (const line of lines.trim().split("\n")) {
    const [dir, id, ...product] = line.split(" ");
    const [vendor, productId] = id.split(":");
    t.write(`${dir}/idVendor`, `${vendor}\n`);
    t.write(`${dir}/idProduct`, `${productId}\n`);
    t.write(`${dir}/product`, `${product.join(" ")}\n`);
    t.link(`/sys/bus/usb/devices/${path.basename(dir)}`, dir);
  }
}

/**
 * `/` on partition `partition` of a SATA disk behind the AHCI controller at `controller`:
 * /sys/dev/block/<rootDev> (the dev_t `mountpoint -d /` prints) leads to the partition, its parent
 * directory is the disk.
 */
export function writeRootPartition(t: TreeWriter, rootDev: string, controller: string, disk: string, partition: string): void {
  const diskDir = `${pciDir(controller)}/ata1/host0/target0:0:0/0:0:0:0/block/${disk}`;
  t.write(`${diskDir}/${partition}/partition`, `${partition.replace(/^\D+/, "")}\n`);
  t.link(`/sys/class/block/${disk}`, diskDir);
  t.link(`/sys/class/block/${partition}`, `${diskDir}/${partition}`);
  t.link(`/sys/dev/block/${rootDev}`, `${diskDir}/${partition}`);
}

/** The network interface `name` as the function of the PCI device at `address`. */
export function writePciNic(t: TreeWriter, name: string, address: string): void {
  const netDir = `${pciDir(address)}/net/${name}`;
  fs.mkdirSync(t.inTree(netDir), { recursive: true });
  t.link(`${netDir}/device`, pciDir(address));
  t.link(`/sys/class/net/${name}`, netDir);
}

/**
 * A test host's minbase tree has no iproute2: this machine's `ip` (same Debian release) goes in with
 * the libraries the tree lacks. False when this machine has none either.
 */
export function installIp(t: TreeWriter): boolean {
  const ip = ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"].find((p) => fs.existsSync(p));
  if (!ip) return false;
  const libraries = execFileSync("ldd", [ip], { encoding: "utf8", env: commandEnv }).split("\n").flatMap((line) => /=> (\/\S+)/.exec(line)?.[1] ?? []);
  for (const library of libraries.filter((l) => !fs.existsSync(t.inTree(l)))) t.write(library, fs.readFileSync(library));
  t.write("/usr/local/bin/ip", fs.readFileSync(ip), 0o755);
  return true;
}

/** A network interface with no device beneath it (a tunnel, a guest's tap), as the kernel lists virtual ones. */
export function writeVirtualNic(t: TreeWriter, name: string): void {
  fs.mkdirSync(t.inTree(`/sys/devices/virtual/net/${name}`), { recursive: true });
  t.link(`/sys/class/net/${name}`, `/sys/devices/virtual/net/${name}`);
}

/**
 * An NVMe drive behind the controller at `controller`, seen through native multipath (the default
 * of Debian's kernels for a multi-controller subsystem): its namespace `disk` is a virtual device of
 * nvme-subsys0, whose controller nvme0 is the PCI function. Partition `partition` gets the device
 * number `number` ("259:3"), a device node and a /dev/disk/by-id link `byId`, as udev makes them.
 */
export function writeNvmeMultipathPartition(t: TreeWriter, controller: string, disk: string, partition: string, number: string, byId: string): void {
  const subsystem = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0";
  const controllerDir = `${pciDir(controller)}/nvme/nvme0`;
  t.write(`${subsystem}/${disk}/${partition}/partition`, `${partition.replace(/^.*p/, "")}\n`);
  fs.mkdirSync(t.inTree(controllerDir), { recursive: true });
  t.link(`${subsystem}/nvme0`, controllerDir);
  t.link("/sys/class/nvme-subsystem/nvme-subsys0", subsystem);
  t.link(`/sys/class/block/${disk}`, `${subsystem}/${disk}`);
  t.link(`/sys/class/block/${partition}`, `${subsystem}/${disk}/${partition}`);
  t.link(`/sys/dev/block/${number}`, `${subsystem}/${disk}/${partition}`);
  const [major, minor] = number.split(":");
  fs.mkdirSync(t.inTree("/dev/disk/by-id"), { recursive: true });
  execFileSync("mknod", [t.inTree(`/dev/${partition}`), "b", major, minor], { env: commandEnv });
  t.link(`/dev/disk/by-id/${byId}`, `/dev/${partition}`);
}
