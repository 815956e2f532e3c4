/** The volume that holds an environment's modules. */
export function environmentVolumeName(environmentId: string): string {
  return `tee-env-${environmentId}`;
}
