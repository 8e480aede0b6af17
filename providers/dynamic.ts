// The code Pulumi serializes into the state for every dynamic resource. It must stay tiny and stable:
// `refresh` and `destroy` run the copy stored in the state (pulumi/pulumi#6490), and the closure
// serializer would capture whatever a method references, secrets included. So each method only
// names its resource kind and `require`s the implementation by package name at run time; the
// workspace package @vfio-host/providers resolves to this project's compiled providers.
import * as pulumi from "@pulumi/pulumi";

function dynamicProvider(kind: string): pulumi.dynamic.ResourceProvider {
  const impl = () => require("@vfio-host/providers").providerFor(kind) as pulumi.dynamic.ResourceProvider;
  return {
    check: (olds, news) => impl().check!(olds, news),
    diff: (id, olds, news) => impl().diff!(id, olds, news),
    create: (inputs) => impl().create(inputs),
    read: (id, props) => impl().read!(id, props),
    update: (id, olds, news) => impl().update!(id, olds, news),
    delete: (id, props) => impl().delete!(id, props),
  };
}

/** The type module: dynamic.Resource makes `pulumi-nodejs:dynamic/vfio-host:<kind>` of it. */
const TYPE_MODULE = "vfio-host";

/** The one type every resource here had before its type named its kind. */
export const UNTYPED = "pulumi-nodejs:dynamic:Resource";

/**
 * A dynamic resource whose type names its kind, so `pulumi preview` tells a KernelCmdline from a
 * LibvirtDomain. The alias to the old type keeps the resources of stacks made before: the engine
 * renames them in the state instead of replacing them.
 */
export abstract class KindResource extends pulumi.dynamic.Resource {
  protected constructor(kind: string, name: string, props: pulumi.Inputs, opts?: pulumi.CustomResourceOptions) {
    super(dynamicProvider(kind), name, props, { ...opts, aliases: [{ type: UNTYPED }, ...(opts?.aliases ?? [])] }, TYPE_MODULE, kind);
  }
}
