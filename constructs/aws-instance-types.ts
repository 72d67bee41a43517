/**
 * What an EC2 instance type offers, for deriving an AwsHostPool's host capacity and cost without
 * an AWS call at synth. vCPU and memory from the EC2 instance type pages
 * (https://aws.amazon.com/ec2/instance-types/); prices are Linux on-demand in us-east-1 as
 * published on https://aws.amazon.com/ec2/pricing/on-demand/ — a default for cost-aware
 * placement, overridden by `costPerHour` when it matters. Unknown types need `capacity`.
 */
export interface InstanceTypeFacts {
  readonly vcpus: number;
  readonly memoryGiB: number;
  readonly usdPerHour: number;
}

export const INSTANCE_TYPES: Readonly<Record<string, InstanceTypeFacts>> = {
  't3.medium': { vcpus: 2, memoryGiB: 4, usdPerHour: 0.0416 },
  't3.large': { vcpus: 2, memoryGiB: 8, usdPerHour: 0.0832 },
  't3.xlarge': { vcpus: 4, memoryGiB: 16, usdPerHour: 0.1664 },
  'm5.large': { vcpus: 2, memoryGiB: 8, usdPerHour: 0.096 },
  'm5.xlarge': { vcpus: 4, memoryGiB: 16, usdPerHour: 0.192 },
  'm6i.large': { vcpus: 2, memoryGiB: 8, usdPerHour: 0.096 },
  'm6i.xlarge': { vcpus: 4, memoryGiB: 16, usdPerHour: 0.192 },
  'm6i.2xlarge': { vcpus: 8, memoryGiB: 32, usdPerHour: 0.384 },
  'c6i.large': { vcpus: 2, memoryGiB: 4, usdPerHour: 0.085 },
  'c6i.xlarge': { vcpus: 4, memoryGiB: 8, usdPerHour: 0.17 },
  'c6i.2xlarge': { vcpus: 8, memoryGiB: 16, usdPerHour: 0.34 },
  'r6i.large': { vcpus: 2, memoryGiB: 16, usdPerHour: 0.126 },
  'r6i.xlarge': { vcpus: 4, memoryGiB: 32, usdPerHour: 0.252 },
};

export function instanceTypeFacts(instanceType: string): InstanceTypeFacts | undefined {
  return Object.prototype.hasOwnProperty.call(INSTANCE_TYPES, instanceType) ? INSTANCE_TYPES[instanceType] : undefined;
}
