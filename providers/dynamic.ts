// The code Pulumi serializes into the state for every dynamic resource. It must stay tiny and stable:
// `refresh` and `destroy` run the copy stored in the state (pulumi/pulumi#6490), and the closure
// serializer would capture whatever a method references, secrets included. So each method only
// names its resource kind and `require`s the implementation by package name at run time; the
// workspace package @vfio-host/providers resolves to this project's compiled providers.
import * as pulumi from "@pulumi/pulumi";

export function dynamicProvider(kind: string): pulumi.dynamic.ResourceProvider {
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
