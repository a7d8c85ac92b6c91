// Validates Strimzi custom resources (a JSON array on stdin) with the validators that
// @kubernetes-models/strimzi-kafka-operator generates from Strimzi's CRDs; prints a JSON array of errors
// ("Kind/name: field: message"). Used by spacesync.testing.kube (tests/deploy/test_k8s_manifests.py).
// These validators check types, enums, required fields and ranges; they do not refuse unknown fields.
import { readFileSync } from "node:fs";

const manifests = JSON.parse(readFileSync(0, "utf8"));
const errors = [];
for (const manifest of manifests) {
  const where = `${manifest.kind}/${manifest.metadata?.name}`;
  const [group, version] = manifest.apiVersion.split("/");
  let model;
  try {
    model = await import(`@kubernetes-models/strimzi-kafka-operator/${group}/${version}/${manifest.kind}`);
  } catch {
    errors.push(`${where}: no Strimzi schema for ${manifest.apiVersion} ${manifest.kind}`);
    continue;
  }
  try {
    new model[manifest.kind](manifest).validate();
  } catch (error) {
    for (const e of error.errors ?? [{ instancePath: "", message: String(error) }]) {
      const field = e.instancePath.replace(/^\//, "").replaceAll("/", ".") || "(top)";
      const detail = e.params?.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : "";
      errors.push(`${where}: ${field}: ${e.message}${detail}`);
    }
  }
}
process.stdout.write(JSON.stringify(errors));
