package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// packageJSON is the part of a package.json this host reads.
type packageJSON struct {
	Name                 string            `json:"name"`
	Version              string            `json:"version"`
	Dependencies         map[string]string `json:"dependencies"`
	DevDependencies      map[string]string `json:"devDependencies"`
	OptionalDependencies map[string]string `json:"optionalDependencies"`
	// Older provider SDKs declare their plugin here instead of in pulumi-plugin.json.
	Pulumi *pluginJSON `json:"pulumi"`
}

// pluginJSON is pulumi-plugin.json (or package.json's "pulumi" field) in a provider SDK package.
type pluginJSON struct {
	Resource                  bool                  `json:"resource"`
	Name                      string                `json:"name"`
	Version                   string                `json:"version"`
	Server                    string                `json:"server"`
	Parameterization          *parameterizationJSON `json:"parameterization"`
	ExtensionParameterization *parameterizationJSON `json:"extensionParameterization"`
}

type parameterizationJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Value   []byte `json:"value"` // base64 in JSON, which encoding/json decodes for []byte
}

// installedPackage is a dependency found in node_modules.
type installedPackage struct {
	dir string
	pkg packageJSON
}

// GetRequiredPackages reports the resource plugins that installed provider SDKs declare, so the
// engine can check (or install) them before running the program.
func (h *nodeHost) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := pluginDependencies(req.GetInfo().GetProgramDirectory())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

// GetRequiredPlugins is the deprecated predecessor of GetRequiredPackages; older CLIs call it.
func (h *nodeHost) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	deps, err := pluginDependencies(firstNonEmpty(req.GetInfo().GetProgramDirectory(), req.GetPwd()))
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, d := range deps {
		if d.Parameterization == nil { // a plain plugin list cannot express parameterized packages
			resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{
				Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server,
			})
		}
	}
	return resp, nil
}

// GetProgramDependencies lists the program's npm dependencies with their installed versions
// (`pulumi about`, and update metadata).
func (h *nodeHost) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	dir := firstNonEmpty(req.GetInfo().GetProgramDirectory(), req.GetPwd())
	pkgs, err := installedPackages(dir, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.pkg.Name, Version: p.pkg.Version})
	}
	return resp, nil
}

func pluginDependencies(programDir string) ([]*pulumirpc.PackageDependency, error) {
	pkgs, err := installedPackages(programDir, true)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var deps []*pulumirpc.PackageDependency
	for _, p := range pkgs {
		plugin := p.pkg.Pulumi
		if b, err := os.ReadFile(filepath.Join(p.dir, "pulumi-plugin.json")); err == nil {
			plugin = &pluginJSON{}
			if err := json.Unmarshal(b, plugin); err != nil {
				return nil, err
			}
		}
		if plugin == nil || !plugin.Resource {
			continue
		}
		dep := &pulumirpc.PackageDependency{
			Name:             plugin.Name,
			Kind:             "resource",
			Version:          firstNonEmpty(plugin.Version, p.pkg.Version),
			Server:           plugin.Server,
			Parameterization: parameterization(plugin.Parameterization),
			Extension:        parameterization(plugin.ExtensionParameterization),
		}
		if dep.Name == "" {
			// "@pulumi/aws" -> plugin "aws".
			dep.Name = p.pkg.Name[strings.LastIndex(p.pkg.Name, "/")+1:]
		}
		key := dep.Name + "@" + dep.Version
		if dep.Parameterization != nil {
			key += "/" + dep.Parameterization.Name + "@" + dep.Parameterization.Version
		}
		if !seen[key] {
			seen[key] = true
			deps = append(deps, dep)
		}
	}
	return deps, nil
}

func parameterization(p *parameterizationJSON) *pulumirpc.PackageParameterization {
	if p == nil {
		return nil
	}
	return &pulumirpc.PackageParameterization{Name: p.Name, Version: p.Version, Value: p.Value}
}

// installedPackages walks the dependency graph of the package.json nearest above programDir
// (dependencies, devDependencies and optionalDependencies of the project itself; dependencies
// and optionalDependencies below that), resolving each name the way Node does: the closest
// node_modules/<name> going up from the depending package. Missing packages are skipped.
func installedPackages(programDir string, transitive bool) ([]installedPackage, error) {
	rootDir := findUp(programDir, "package.json")
	if rootDir == "" {
		return nil, nil
	}
	root, err := readPackageJSON(rootDir)
	if err != nil {
		return nil, err
	}

	var out []installedPackage
	visited := map[string]bool{}
	var visit func(from string, names []string) error
	visit = func(from string, names []string) error {
		for _, name := range names {
			dir := findPackage(from, name)
			if dir == "" {
				continue
			}
			// Node resolves a package's own dependencies from its real path (workspaces and
			// symlinked node_modules), and the real path also identifies it for cycle detection.
			if real, err := filepath.EvalSymlinks(dir); err == nil {
				dir = real
			}
			if visited[dir] {
				continue
			}
			visited[dir] = true
			pkg, err := readPackageJSON(dir)
			if err != nil {
				return err
			}
			if pkg.Name == "" {
				pkg.Name = name
			}
			out = append(out, installedPackage{dir: dir, pkg: pkg})
			if transitive {
				if err := visit(dir, depNames(pkg.Dependencies, pkg.OptionalDependencies)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err = visit(rootDir, depNames(root.Dependencies, root.DevDependencies, root.OptionalDependencies))
	return out, err
}

// depNames returns the keys of the given dependency maps, sorted so results are stable.
func depNames(maps ...map[string]string) []string {
	var names []string
	for _, m := range maps {
		for name := range m {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func readPackageJSON(dir string) (packageJSON, error) {
	var pkg packageJSON
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return pkg, err
	}
	err = json.Unmarshal(b, &pkg)
	return pkg, err
}

// findPackage returns the directory of the installed npm package `name` as seen from dir, or "".
func findPackage(dir, name string) string {
	found := findUp(dir, filepath.Join("node_modules", filepath.FromSlash(name), "package.json"))
	if found == "" {
		return ""
	}
	return filepath.Join(found, "node_modules", filepath.FromSlash(name))
}

// findUp returns the first of dir and its ancestors that contains rel, or "".
func findUp(dir, rel string) string {
	if dir == "" {
		return ""
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
