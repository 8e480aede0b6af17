// The program of every host stack: its config, checked by one schema, becomes one VfioHost.
import * as pulumi from "@pulumi/pulumi";
import { LibvirtHost } from "../providers/libvirt/libvirtHostResource";
import { VfioHost } from "../providers/vfioHost";
import { recordProcessStart, recordProgramStep } from "../providers/timings";
import { readStackConfig } from "./config";
import { secretConnection } from "./connection";

recordProcessStart("program");
const config = readStackConfig();
const connection = secretConnection(config.connection);
const host = new VfioHost(pulumi.getStack(), {
  connection,
  kernelArgs: config.kernelArgs,
  removeKernelArgs: config.removeKernelArgs,
  acknowledgeBootCriticalArgs: config.acknowledgeBootCriticalArgs,
  bootBackend: config.bootBackend,
  extlinuxModules: config.extlinuxModules,
  vfio: config.vfio,
  reboot: config.reboot,
  rebootTimeoutSeconds: config.rebootTimeoutSeconds,
  trialBoot: config.trialBoot,
  trialWatchdogSeconds: config.trialWatchdogSeconds,
  trialPanicSeconds: config.trialPanicSeconds,
});

export const boundDevices = host.boundDevices;
export const boundIds = host.boundIds;
export const iommuGroups = host.iommuGroups;
export const verifiedBootId = host.verifiedBootId;
export const drivers = host.drivers;

// The guests come after the verified boot. Their hostdevs must be devices this stack binds (known
// at preview, so a fresh host goes from bare to a running guest in one up), on vfio-pci by then.
const libvirt = config.libvirt
  ? new LibvirtHost(`${pulumi.getStack()}-libvirt`, { connection, ...config.libvirt, vfioDevices: host.boundDevices }, { dependsOn: [host] })
  : undefined;
export const domains = libvirt ? Object.keys(libvirt.domains) : [];
recordProgramStep("declared");
