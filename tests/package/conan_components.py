"""conanfile.py's components must say what the CMake build links.

  conan_components.py <conanfile.py> <build>/qcloud-components.txt

The manifest is written by qcloud_write_component_manifest() from the
dependency table (cmake/QcloudDependencies.cmake): one line per component,
"<name> <library file> <conan requirement>...". The recipe's _components
dict is read with ast (no Conan needed) and compared entry by entry.
"""
import ast
import sys


def recipe_components(path):
    tree = ast.parse(open(path).read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_components" for t in node.targets):
            return ast.literal_eval(node.value)
    sys.exit(f"FAIL: no _components in {path}")


def main():
    recipe = recipe_components(sys.argv[1])
    built = {}
    for line in open(sys.argv[2]):
        words = line.split()
        if words:
            built[words[0]] = (words[1], sorted(words[2:]))
    problems = []
    for name in sorted(set(recipe) | set(built)):
        if name not in recipe:
            problems.append(f"component {name} is built but missing from conanfile.py")
            continue
        if name not in built:
            problems.append(f"conanfile.py declares {name}, which the build does not make")
            continue
        lib, requires = recipe[name]
        want_lib, want_requires = built[name]
        if lib != want_lib:
            problems.append(f"{name}: conanfile.py library {lib}, build {want_lib}")
        if sorted(requires) != want_requires:
            problems.append(f"{name}: conanfile.py requires {sorted(requires)}, "
                            f"the build links {want_requires}")
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"ok: conanfile.py matches the build's {len(built)} components: {', '.join(built)}")


main()
