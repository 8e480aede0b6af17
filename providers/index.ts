// Entry of the @vfio-host/providers workspace package: what the serialized shims require at run time.
import type * as pulumi from "@pulumi/pulumi";
import { exitWhenEngineGone } from "./engineWatch";
import { hostFileProvider } from "./hostFile";
import { kernelCmdlineProvider } from "./kernelCmdline/resource";
import { hostRebootProvider } from "./reboot/resource";
import { initramfsModulesProvider } from "./initramfsModules/resource";
import { vfioBindingProvider } from "./vfioBinding/resource";
import { hostPackagesProvider } from "./hostPackages/resource";
import { storagePoolProvider } from "./libvirt/poolResource";
import { volumeProvider } from "./libvirt/volumeResource";
import { libvirtDomainProvider } from "./libvirt/domainResource";
import { shareReadsInThisProcess } from "./ssh/host";
import { recordProcessStart, timedProvider } from "./timings";

const providers: Record<string, pulumi.dynamic.ResourceProvider> = {
  HostFile: hostFileProvider,
  KernelCmdline: kernelCmdlineProvider,
  HostReboot: hostRebootProvider,
  InitramfsModules: initramfsModulesProvider,
  VfioBinding: vfioBindingProvider,
  HostPackages: hostPackagesProvider,
  StoragePool: storagePoolProvider,
  Volume: volumeProvider,
  LibvirtDomain: libvirtDomainProvider,
};

exitWhenEngineGone();
// This process serves one Pulumi run: the resources it checks share what they read (see host.ts).
shareReadsInThisProcess();
const timed = Object.fromEntries(Object.entries(providers).map(([kind, provider]) => [kind, timedProvider(kind, provider)]));
recordProcessStart("provider");

export function providerFor(kind: string): pulumi.dynamic.ResourceProvider {
  const provider = timed[kind];
  if (!provider) {
    throw new Error(`No provider for resource kind ${kind}: the state was written by a newer vfio-host; update the checkout`);
  }
  return provider;
}
