// InitramfsModules on a dracut host: the drop-in it owns whole, the rebuild that reaches the image
// the loader reads (on a systemd-boot host: /boot's image, then kernel-install's copy in the entry),
// nothing to do once the image has the modules, and the refusal when a backup says the file was
// someone else's.
import { DRACUT_CONF_PATH, renderDracutVfioConf } from "../../../providers/initramfsModules/dracut";
import { InitramfsModulesInputs, planInitramfs } from "../../../providers/initramfsModules/resource";
import { moduleListForKernel } from "../../../providers/kernel/modules";
import { debianKernel, debianLsinitrdAfter, debianLsinitrdBefore } from "./fixtures";

const inputs = InitramfsModulesInputs.parse({});
const RELEASE = debianKernel.release;
/** DRACUT_BOOT_SECTION's output on the sdboot-dracut lab: an ESP entry, kernel-install, no dracut plugin (Debian). */
const sdBootBoot = [`entry /boot/efi/3f6d2c0a9e1b4c7d8a5e2f1b0c9d8e7f/${RELEASE}/initrd`, `image /boot/initrd.img-${RELEASE}`, `kernel /boot/vmlinuz-${RELEASE}`, "kernel-install", ""].join("\n");
const facts = {
  kernel: debianKernel,
  systems: ["dracut" as const],
  files: {},
  listing: { dracut: debianLsinitrdBefore },
  boot: { dracut: sdBootBoot },
};

describe("planInitramfs on dracut", () => {
  it("creates the drop-in and rebuilds /boot's image, then kernel-install's copy, in that order", () => {
    const plan = planInitramfs(inputs, facts, undefined);
    expect(plan.system).toBe("dracut");
    expect(plan.files).toEqual([{ path: DRACUT_CONF_PATH, before: undefined, after: renderDracutVfioConf(moduleListForKernel(debianKernel)) }]);
    expect(plan.commands).toEqual([
      ["dracut", "--force", "--kver", RELEASE, `/boot/initrd.img-${RELEASE}`],
      ["kernel-install", "add", RELEASE, `/boot/vmlinuz-${RELEASE}`],
    ]);
    expect(plan.changes[plan.changes.length - 1]).toBe(
      `rebuild the initramfs of ${RELEASE} (dracut --force --kver ${RELEASE} /boot/initrd.img-${RELEASE} && kernel-install add ${RELEASE} /boot/vmlinuz-${RELEASE}): its configuration changed`,
    );
  });

  it("has nothing to do once the drop-in is there and the image holds the modules", () => {
    const written = renderDracutVfioConf(moduleListForKernel(debianKernel));
    const plan = planInitramfs(inputs, { ...facts, files: { [DRACUT_CONF_PATH]: written }, listing: { dracut: debianLsinitrdAfter } }, undefined);
    expect(plan.changes).toEqual([]);
    expect(plan.rebuild).toBeUndefined();
  });

  it("rebuilds an image that lacks the modules even when the drop-in is right", () => {
    const written = renderDracutVfioConf(moduleListForKernel(debianKernel));
    const plan = planInitramfs(inputs, { ...facts, files: { [DRACUT_CONF_PATH]: written } }, undefined);
    expect(plan.rebuild).toMatch(/^the image lacks vfio/);
  });

  it("without state, refuses a drop-in that differs from both ours and the backup (someone else's file)", () => {
    const plan = planInitramfs(inputs, { ...facts, files: { [DRACUT_CONF_PATH]: "# hand written\n" }, backups: { [DRACUT_CONF_PATH]: Buffer.from("# older\n") } }, undefined);
    expect(plan.refusal).toContain(DRACUT_CONF_PATH);
  });
});
