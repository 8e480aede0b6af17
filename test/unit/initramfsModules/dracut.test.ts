import { execFileSync } from "child_process";
import fc from "fast-check";
import {
  DRACUT_BOOT_SECTION,
  DRACUT_CONF_PATH,
  DRACUT_LISTING,
  dracutRebuild,
  kernelInstallAdd,
  parseDracutBoot,
  renderDracutVfioConf,
} from "../../../providers/initramfsModules/dracut";
import { missingFromInitramfs, moduleListForKernel } from "../../../providers/kernel/modules";
import { vfioBuiltInKernel } from "../vfioBinding/fixtures";
import { alpine66Kernel, debianKernel, debianLsinitrdAfter, debianLsinitrdBefore } from "./fixtures";

const release = debianKernel.release;

describe("renderDracutVfioConf", () => {
  it("force-loads the kernel's VFIO modules early and carries /etc/modprobe.d, in a file that says whose it is", () => {
    expect(DRACUT_CONF_PATH).toBe("/etc/dracut.conf.d/90-vfio-host.conf");
    expect(renderDracutVfioConf(moduleListForKernel(debianKernel))).toBe(
      [
        "# Managed by vfio-host (Pulumi InitramfsModules); changes here are overwritten.",
        "# force_drivers: put in the image and loaded early, so vfio-pci claims its devices first.",
        "# install_optional_items: /etc/modprobe.d (vfio-pci's ids= and softdeps), which dracut copies only in hostonly mode.",
        'force_drivers+=" vfio vfio_pci vfio_iommu_type1 vfio_virqfd "',
        'install_optional_items+=" /etc/modprobe.d/*.conf "',
        "",
      ].join("\n"),
    );
  });

  it("names only what the kernel has as loadable modules (no vfio_virqfd after 6.2, nothing built in)", () => {
    expect(renderDracutVfioConf(moduleListForKernel(alpine66Kernel))).toContain('force_drivers+=" vfio vfio_pci vfio_iommu_type1 "\n');
    expect(renderDracutVfioConf(moduleListForKernel(vfioBuiltInKernel))).not.toMatch(/^force_drivers/m);
  });

  it("is a file bash sources to the intended values, appended to what came before", () => {
    const conf = renderDracutVfioConf(moduleListForKernel(debianKernel));
    const out = execFileSync("bash", ["-c", `force_drivers=" nvme "; ${conf}\nprintf '%s|' $force_drivers`]).toString();
    expect(out).toBe("nvme|vfio|vfio_pci|vfio_iommu_type1|vfio_virqfd|");
  });
});

describe("lsinitrd listings", () => {
  const modules = moduleListForKernel(debianKernel);

  it("missingFromInitramfs reads lsinitrd's ls -l lines as they are", () => {
    expect(missingFromInitramfs(debianLsinitrdAfter, modules)).toEqual([]);
    expect(missingFromInitramfs(debianLsinitrdBefore, modules)).toEqual(["vfio", "vfio_pci", "vfio_iommu_type1", "vfio_virqfd"]);
  });

  it("finds a module named only in an ls -l line, whatever the owner, size and date columns hold", () => {
    const line = fc.tuple(
      fc.constantFrom("-rw-r--r--", "-rw-------"),
      fc.nat(9),
      fc.constantFrom("root", "nobody"),
      fc.nat(10_000_000),
      fc.constantFrom("Mar  9  2023", "Dec  1 17:49", "Jan 31 00:00"),
      fc.constantFrom(".ko", ".ko.xz", ".ko.zst"),
    );
    fc.assert(
      fc.property(line, ([mode, links, owner, size, date, suffix]) => {
        const listing = `${mode} ${String(links).padStart(3)} ${owner.padEnd(8)} ${owner.padEnd(8)} ${String(size).padStart(8)} ${date} usr/lib/modules/${release}/kernel/drivers/vfio/pci/vfio-pci${suffix}\n`;
        expect(missingFromInitramfs(listing, modules)).toEqual(["vfio", "vfio_iommu_type1", "vfio_virqfd"]);
      }),
    );
  });
});

describe("parseDracutBoot", () => {
  it("Debian with GRUB: rebuilds /boot/initrd.img-<release>, named", () => {
    const boot = parseDracutBoot(`image /boot/initrd.img-${release}\nkernel /boot/vmlinuz-${release}\n`, release);
    expect(boot).toEqual({ image: `/boot/initrd.img-${release}`, rebuild: [["dracut", "--force", "--kver", release, `/boot/initrd.img-${release}`]] });
  });

  it("Fedora with GRUB (BLS): /boot/initramfs-<release>.img; kernel-install alone makes no ESP entry", () => {
    const boot = parseDracutBoot(`image /boot/initramfs-${release}.img\nkernel /lib/modules/${release}/vmlinuz\nkernel-install\nplugin /usr/lib/kernel/install.d/50-dracut.install\n`, release);
    expect(boot).toEqual({ image: `/boot/initramfs-${release}.img`, rebuild: [dracutRebuild(release, `/boot/initramfs-${release}.img`)] });
  });

  it("no image yet: dracut chooses where, and the listing has nothing to list until it has", () => {
    expect(parseDracutBoot("", release)).toEqual({ image: undefined, rebuild: [["dracut", "--force", "--kver", release]] });
  });

  it("Debian with systemd-boot: dracut to /boot first, then kernel-install copies it to the entry, which is what boots", () => {
    const entry = `/boot/efi/0a1b2c3d4e5f60718293a4b5c6d7e8f9/${release}/initrd`;
    const section = `entry ${entry}\nimage /boot/initrd.img-${release}\nkernel /boot/vmlinuz-${release}\nkernel-install\n`;
    expect(parseDracutBoot(section, release)).toEqual({
      image: entry,
      rebuild: [
        ["dracut", "--force", "--kver", release, `/boot/initrd.img-${release}`],
        ["kernel-install", "add", release, `/boot/vmlinuz-${release}`],
      ],
    });
    // Where /boot has no image yet, Debian's name is the one its 85-initrd.install copies.
    expect(parseDracutBoot(`entry ${entry}\nkernel-install\nplugin masked\n`, release).rebuild).toEqual([
      dracutRebuild(release, `/boot/initrd.img-${release}`),
      kernelInstallAdd(release, `/boot/vmlinuz-${release}`),
    ]);
  });

  it("Fedora with systemd-boot: kernel-install's dracut plugin builds the entry's image, so it runs alone", () => {
    const entry = `/efi/fedora/${release}/initrd`;
    const section = `entry ${entry}\nkernel /lib/modules/${release}/vmlinuz\nkernel-install\nplugin /usr/lib/kernel/install.d/50-dracut.install\n`;
    expect(parseDracutBoot(section, release)).toEqual({ image: entry, rebuild: [["kernel-install", "add", release, `/lib/modules/${release}/vmlinuz`]] });
  });

  it("an ESP entry without kernel-install (left from an old install) is not what the rebuild can refresh: /boot's image is", () => {
    expect(parseDracutBoot(`entry /efi/x/${release}/initrd\nimage /boot/initrd.img-${release}\n`, release).rebuild).toEqual([
      dracutRebuild(release, `/boot/initrd.img-${release}`),
    ]);
  });
});

describe("the shell snippets", () => {
  it("parse with sh -n and run on this machine without a dracut host (nothing found, nothing printed)", () => {
    for (const snippet of [DRACUT_BOOT_SECTION, DRACUT_LISTING]) {
      expect(() => execFileSync("sh", ["-n", "-c", snippet])).not.toThrow();
    }
    const out = execFileSync("sh", ["-c", `release=0.0.0-not-installed; ${DRACUT_LISTING}`]).toString();
    expect(out).toBe("");
  });
});
