// The program of every host stack: its config, checked by one schema, becomes one VfioHost.
import * as pulumi from "@pulumi/pulumi";
import { VfioHost } from "../providers/vfioHost";
import { CONFIG_NAMESPACE, readStackConfig } from "./config";
import { connectionFromConfig } from "./connection";

const config = readStackConfig();
const host = new VfioHost(pulumi.getStack(), {
  connection: connectionFromConfig(new pulumi.Config(CONFIG_NAMESPACE)),
  kernelArgs: config.kernelArgs,
  removeKernelArgs: config.removeKernelArgs,
  bootBackend: config.bootBackend,
  extlinuxModules: config.extlinuxModules,
  vfio: config.vfio,
  reboot: config.reboot,
});

export const boundDevices = host.boundDevices;
export const boundIds = host.boundIds;
export const iommuGroups = host.iommuGroups;
export const verifiedBootId = host.verifiedBootId;
export const drivers = host.drivers;
