/**
 * The plan as an S3 object, one per fleet: the body is the same bytes as shard-plan.json
 * (rendered lazily at synth), and `grantRead(role)` gives a role `s3:GetObject` on this one
 * object and nothing else — agents need the plan, not the bucket.
 */
import { Lazy } from 'cdktf';
import { Construct } from 'constructs';
import type { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block';
import { S3Object } from '@cdktf/provider-aws/lib/s3-object';
import type { FleetScope } from './fleet-context';

export interface PlanObjectProps {
  /**
   * Name of an existing bucket to upload the plan to.
   * @default a new private bucket named `shardform-<fleet>-<random suffix>`
   */
  readonly bucket?: string;
}

const ID = 'plan-object';

export class PlanObject extends Construct {
  /** The fleet's plan object, created on first use (every AWS pool of a fleet reads the same plan). */
  static forFleet(fleet: FleetScope, props: PlanObjectProps = {}): PlanObject {
    const existing = fleet.node.tryFindChild(ID);
    if (existing instanceof PlanObject) return existing;
    return new PlanObject(fleet, ID, fleet, props);
  }

  /** The bucket name (a Terraform reference when the bucket is created here). */
  readonly bucketName: string;
  /** The bucket given in props, if any; pools compare theirs against it. */
  readonly givenBucket: string | undefined;
  /** The object key: `shardform/<fleet>/shard-plan.json`. */
  readonly key: string;
  /** ARN of the plan object: what grantRead allows, and only that. */
  readonly objectArn: string;
  readonly object: S3Object;

  private constructor(scope: Construct, id: string, fleet: FleetScope, props: PlanObjectProps) {
    super(scope, id);
    this.key = `shardform/${fleet.fleetName}/shard-plan.json`;
    this.givenBucket = props.bucket;
    if (props.bucket !== undefined) {
      this.bucketName = props.bucket;
      this.objectArn = `arn:aws:s3:::${props.bucket}/${this.key}`;
    } else {
      const bucket = new S3Bucket(this, 'bucket', {
        // S3 allows 63 characters and Terraform appends 26 for the unique suffix.
        bucketPrefix: `shardform-${fleet.fleetName}`.slice(0, 36) + '-',
        tags: { 'shardform:fleet': fleet.fleetName },
      });
      new S3BucketPublicAccessBlock(this, 'private', {
        bucket: bucket.id,
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      });
      this.bucketName = bucket.bucket;
      this.objectArn = `${bucket.arn}/${this.key}`;
    }
    // cdktf resolves every token once while preparing, before validations run; compiling the plan
    // then would report an invalid tree as a resolution error instead of the validation messages.
    this.object = new S3Object(this, 'plan', {
      bucket: this.bucketName,
      key: this.key,
      content: Lazy.stringValue({ produce: (context) => (context.preparing ? '' : fleet.planJson()) }),
      contentType: 'application/json',
      // The digest in metadata lets `aws s3api head-object` tell which plan is live without a download.
      metadata: { 'plan-digest': Lazy.stringValue({ produce: (context) => (context.preparing ? '' : fleet.planDigest()) }), 'plan-generation': String(fleet.generation) },
    });
  }

  /** `s3://<bucket>/<key>`, what agents are started with. */
  get s3Uri(): string {
    return `s3://${this.bucketName}/${this.key}`;
  }

  /** Allows `role` to read the plan object: `s3:GetObject` on its ARN, nothing else. */
  grantRead(role: IamRole): IamRolePolicy {
    return new IamRolePolicy(role, 'read-shard-plan', {
      role: role.name,
      name: 'read-shard-plan',
      policy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Sid: 'ReadShardPlan', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [this.objectArn] }],
      }),
    });
  }
}
