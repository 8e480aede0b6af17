// VfioBinding inputs, checked before anything touches a host. Every message names the key, the
// value found and a value that would be accepted.
import { z } from "zod";
import { describeInput } from "../inputErrors";
import { normalizePciAddress, PCI_ADDRESS } from "../kernel/pci";
import { VENDOR_DEVICE_ID } from "./hostFacts";
import { NOTHING_SELECTED } from "./selectDevices";

const DEVICE_REF = new RegExp(`${VENDOR_DEVICE_ID.source}|${PCI_ADDRESS.source}`);

const deviceRef = z
  .string({ error: (issue) => `devices: ${describeInput(issue.input)} is not a string; write an id like "8086:3a67" or an address like "0000:00:1a.0"` })
  .regex(DEVICE_REF, {
    error: (issue) =>
      `devices: ${describeInput(issue.input)} is neither a vendor:device id nor a PCI address; write an id like "8086:3a67" or an address like "0000:00:1a.0"`,
  });

const usbId = z
  .string({ error: (issue) => `usbDevices: ${describeInput(issue.input)} is not a string; write a vendor:product id like "046d:c52b"` })
  .regex(VENDOR_DEVICE_ID, {
    error: (issue) => `usbDevices: ${describeInput(issue.input)} is not a USB vendor:product id; write 4 hex digits on each side, like "046d:c52b"`,
  });

const groupError = (issue: { input?: unknown }) =>
  `iommuGroups: ${describeInput(issue.input)} is not an IOMMU group number; write the number of a directory in /sys/kernel/iommu_groups, like 4`;
const groupNumber = z.number({ error: groupError }).int({ error: groupError }).nonnegative({ error: groupError });

const pciAddress = (key: string) =>
  z
    .string({ error: (issue) => `${key}: ${describeInput(issue.input)} is not a string; write a PCI address like "0000:00:1d.7"` })
    .regex(PCI_ADDRESS, {
      error: (issue) => `${key}: ${describeInput(issue.input)} is not a PCI address; write it as \`lspci -D\` does, like "0000:00:1d.7"`,
    });

// What a refusal names: a mount point, "swap:<area>", "crypttab:<name>" or "ssh" (hostNeeds.ts).
const hostNeedName = z
  .string({ error: (issue) => `acknowledgeUnresolvedHostDevices: ${describeInput(issue.input)} is not a string; write what the refusal names, like "/boot/efi" or "ssh"` })
  .regex(/^(\/.*|swap:\S.*|crypttab:\S.*|ssh)$/, {
    error: (issue) =>
      `acknowledgeUnresolvedHostDevices: ${describeInput(issue.input)} names nothing the host needs; write a mount point ("/boot/efi"), ` +
      '"swap:<area>" ("swap:/dev/sda2"), "crypttab:<name>" ("crypttab:cryptdata") or "ssh", as the refusal names it',
  });

const list = <T extends z.ZodType>(key: string, item: T, example: string) =>
  z.array(item, { error: `${key}: must be a list, e.g. ${example}` }).default([]);

export const VfioBindingInputs = z
  .strictObject(
    {
      devices: list("devices", deviceRef, '["8086:3a67", "0000:00:1a.7"]'),
      iommuGroups: list("iommuGroups", groupNumber, "[4]"),
      usbDevices: list("usbDevices", usbId, '["046d:c52b"]'),
      acknowledgeGroupMembers: list("acknowledgeGroupMembers", pciAddress("acknowledgeGroupMembers"), '["0000:00:1d.7"]'),
      allowHostCritical: list("allowHostCritical", pciAddress("allowHostCritical"), '["0000:00:1f.2"]'),
      acknowledgeUnresolvedHostDevices: list("acknowledgeUnresolvedHostDevices", hostNeedName, '["/boot/efi", "ssh"]'),
      bindBy: z.enum(["ids", "address"], { error: (issue) => `bindBy: ${describeInput(issue.input)} must be "ids" or "address"` }).default("ids"),
      allowUnsafeInterrupts: z
        .boolean({ error: (issue) => `allowUnsafeInterrupts: ${describeInput(issue.input)} must be true or false` })
        .default(false),
    },
    {
      error: (issue) =>
        issue.code === "unrecognized_keys"
          ? `Unknown VfioBinding input ${issue.keys.map((k) => `\`${k}\``).join(", ")}; the inputs are devices, iommuGroups, ` +
            "usbDevices, acknowledgeGroupMembers, allowHostCritical, acknowledgeUnresolvedHostDevices, bindBy and allowUnsafeInterrupts"
          : 'VfioBinding inputs must be an object, e.g. { devices: ["8086:3a67"] }',
    },
  )
  .superRefine((inputs, ctx) => {
    if (inputs.devices.length + inputs.iommuGroups.length + inputs.usbDevices.length === 0) {
      ctx.addIssue({ code: "custom", path: ["devices"], message: NOTHING_SELECTED });
    }
    const selected = new Set(inputs.devices.map(normalizePciAddress));
    for (const entry of inputs.acknowledgeGroupMembers) {
      if (selected.has(normalizePciAddress(entry) ?? entry)) {
        ctx.addIssue({
          code: "custom",
          path: ["acknowledgeGroupMembers"],
          message: `acknowledgeGroupMembers: ${describeInput(entry)} is also in \`devices\`; a device is either passed through or left to the host, so drop it from one of them`,
        });
      }
    }
  });

export type VfioBindingInputs = z.output<typeof VfioBindingInputs>;
