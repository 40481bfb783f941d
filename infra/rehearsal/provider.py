"""The Pulumi program deployed into the stand-in account: an engine mock whose provider
creates each resource of the serving path in moto with boto3, as pulumi-aws would call the
same APIs, and hands back moto's own ids and ARNs.

So every policy document, Lambda environment and user data the program builds from those
outputs names what the account really holds, and moto's validation of names and shapes
applies. Resources off the serving path (alarms, scaling policies, the dashboard, the
EventBridge rules and targets that forward failed refreshes, the image build, log groups, the
activator's function code) keep the offline runner's outputs: they are shown by `kiln plan`
and `kiln review`, and only AWS can exercise them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks

from infra.preview.program import KilnMocks, computed_outputs, physical_name, plain_values
from infra.providers.model_artifact import ModelArtifactProvider
from infra.rehearsal.local_aws import LocalAws


class RehearsalDeployError(Exception):
    """A resource the stand-in account refused, or one the rehearsal cannot create."""

    def __init__(self, resource: str, message: str) -> None:
        super().__init__(f"{resource}: {message}")
        self.resource = resource


def _tags(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in (tags or {}).items()]


def _action(action: dict[str, Any]) -> dict[str, Any]:
    """A listener action from pulumi-aws's shape to ELBv2's."""
    kind = action["type"]
    if kind == "forward" and "forward" in action:
        groups = [{"TargetGroupArn": g["arn"], "Weight": g.get("weight", 1)} for g in action["forward"]["targetGroups"]]
        return {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}
    if kind == "forward":
        return {"Type": "forward", "TargetGroupArn": action["targetGroupArn"]}
    if kind == "fixed-response":
        fixed = action["fixedResponse"]
        config = {"StatusCode": fixed["statusCode"], "ContentType": fixed.get("contentType"),
                  "MessageBody": fixed.get("messageBody")}
        return {"Type": kind, "FixedResponseConfig": {k: v for k, v in config.items() if v is not None}}
    if kind == "redirect":
        redirect = action["redirect"]
        config = {"Protocol": redirect.get("protocol"), "Port": redirect.get("port"),
                  "StatusCode": redirect["statusCode"], "Host": redirect.get("host"), "Path": redirect.get("path")}
        return {"Type": kind, "RedirectConfig": {k: v for k, v in config.items() if v is not None}}
    raise ValueError(f"listener action type {kind!r} is not one the rehearsal creates")


def _condition(condition: dict[str, Any]) -> dict[str, Any]:
    """A listener rule condition from pulumi-aws's shape to ELBv2's."""
    if "pathPattern" in condition:
        return {"Field": "path-pattern", "PathPatternConfig": {"Values": condition["pathPattern"]["values"]}}
    if "hostHeader" in condition:
        return {"Field": "host-header", "HostHeaderConfig": {"Values": condition["hostHeader"]["values"]}}
    if "httpHeader" in condition:
        header = condition["httpHeader"]
        return {"Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": header["httpHeaderName"], "Values": header["values"]}}
    raise ValueError(f"listener rule condition {sorted(condition)} is not one the rehearsal creates")


class StandInProvider:
    """One create function per resource type on the serving path: (physical name, inputs) →
    the outputs AWS would return."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        # What was declared but could not be applied faithfully in moto, for the report.
        self.skipped: list[str] = []
        self.creates: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "aws:s3/bucket:Bucket": self.bucket,
            "aws:s3/bucketPolicy:BucketPolicy": self.bucket_policy,
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": self.public_access_block,
            "aws:s3/bucketVersioning:BucketVersioning": self.versioning,
            "aws:iam/role:Role": self.role,
            "aws:iam/rolePolicy:RolePolicy": self.role_policy,
            "aws:iam/instanceProfile:InstanceProfile": self.instance_profile,
            "aws:ec2/securityGroup:SecurityGroup": self.security_group,
            "aws:ec2/vpcEndpoint:VpcEndpoint": self.vpc_endpoint,
            "aws:lb/loadBalancer:LoadBalancer": self.load_balancer,
            "aws:lb/targetGroup:TargetGroup": self.target_group,
            "aws:lb/listener:Listener": self.listener,
            "aws:lb/listenerRule:ListenerRule": self.listener_rule,
            "aws:lb/targetGroupAttachment:TargetGroupAttachment": self.target_group_attachment,
            "aws:ec2/launchTemplate:LaunchTemplate": self.launch_template,
            "aws:autoscaling/group:Group": self.group,
            "aws:glue/catalogDatabase:CatalogDatabase": self.catalog_database,
            "aws:glue/catalogTable:CatalogTable": self.catalog_table,
            "pulumi-python:dynamic/kiln:ModelArtifact": self.model_artifact,
            "aws:secretsmanager/secret:Secret": self.secret,
            "aws:secretsmanager/secretVersion:SecretVersion": self.secret_version,
        }

    # --- S3 ----------------------------------------------------------------------------
    def bucket(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        location = {} if self.aws.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.aws.region}}
        self.aws.client("s3").create_bucket(Bucket=name, **location)
        return {"id": name, "bucket": name, "arn": f"arn:aws:s3:::{name}"}

    def bucket_policy(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The statements moto can judge. moto reads a statement's Condition as always true,
        so a conditional Deny (the TLS-only rule) would refuse every request; such statements
        are left out and listed in the report (the rehearsal reaches S3 over TLS regardless)."""
        policy = json.loads(inputs["policy"])
        kept = [st for st in policy["Statement"] if "Condition" not in st]
        self.skipped.extend(f"bucket policy statement {st.get('Sid', '(no Sid)')} of {inputs['bucket']}: moto does not "
                            f"evaluate its Condition {json.dumps(st['Condition'])}"
                            for st in policy["Statement"] if "Condition" in st)
        if kept:
            self.aws.client("s3").put_bucket_policy(Bucket=inputs["bucket"], Policy=json.dumps({**policy, "Statement": kept}))
        return {"id": inputs["bucket"]}

    def public_access_block(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        config = {key[0].upper() + key[1:]: bool(inputs.get(key, False)) for key in keys}
        self.aws.client("s3").put_public_access_block(Bucket=inputs["bucket"], PublicAccessBlockConfiguration=config)
        return {"id": inputs["bucket"]}

    def versioning(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        status = inputs["versioningConfiguration"]["status"]
        self.aws.client("s3").put_bucket_versioning(Bucket=inputs["bucket"], VersioningConfiguration={"Status": status})
        return {"id": inputs["bucket"]}

    # --- Secrets Manager (an endpoint's token hashes: its instances read them at start) ----
    def secret(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("kmsKeyId"):
            self.skipped.append(f"secret {name}: encrypted with moto's default key, not {inputs['kmsKeyId']}")
        created = self.aws.client("secretsmanager").create_secret(
            Name=name, Description=inputs.get("description", ""), Tags=_tags(inputs.get("tags")))
        return {"id": created["ARN"], "arn": created["ARN"], "name": name}

    def secret_version(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        value = inputs["secretString"]
        # pulumi-aws marks the value secret; the engine hands it over wrapped.
        value = value["value"] if isinstance(value, dict) else value
        version = self.aws.client("secretsmanager").put_secret_value(SecretId=inputs["secretId"], SecretString=value)
        return {"id": f"{inputs['secretId']}|{version['VersionId']}", "versionId": version["VersionId"],
                "arn": version["ARN"]}

    # --- IAM ---------------------------------------------------------------------------
    def role(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        role = self.aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=inputs["assumeRolePolicy"],
                                                  Tags=_tags(inputs.get("tags")))["Role"]
        return {"id": name, "name": name, "arn": role["Arn"], "uniqueId": role["RoleId"]}

    def role_policy(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        self.aws.client("iam").put_role_policy(RoleName=inputs["role"], PolicyName=name, PolicyDocument=inputs["policy"])
        return {"id": f"{inputs['role']}:{name}", "name": name}

    def instance_profile(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        iam = self.aws.client("iam")
        profile = iam.create_instance_profile(InstanceProfileName=name, Tags=_tags(inputs.get("tags")))["InstanceProfile"]
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=inputs["role"])
        return {"id": name, "name": name, "arn": profile["Arn"]}

    # --- network and load balancing -----------------------------------------------------
    def security_group(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        group = self.aws.client("ec2").create_security_group(GroupName=name, Description=inputs["description"],
                                                             VpcId=inputs["vpcId"])
        return {"id": group["GroupId"], "name": name,
                "arn": f"arn:aws:ec2:{self.aws.region}:{self._account()}:security-group/{group['GroupId']}"}

    def vpc_endpoint(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """An endpoint of `kiln:network.vpcEndpoints`, as pulumi-aws creates it. moto records it
        (and a gateway endpoint's route to S3's prefix list), but the rehearsal's runtimes reach
        the stand-in account on loopback: what private DNS and the narrowed security groups do
        to an instance's calls shows only on AWS."""
        ec2 = self.aws.client("ec2")
        kind = inputs.get("vpcEndpointType", "Gateway")
        arguments: dict[str, Any] = {
            "VpcId": inputs["vpcId"], "ServiceName": inputs["serviceName"], "VpcEndpointType": kind,
            "TagSpecifications": [{"ResourceType": "vpc-endpoint", "Tags": _tags(inputs.get("tags"))}],
        }
        if kind == "Gateway":
            arguments["RouteTableIds"] = inputs.get("routeTableIds", [])
        else:
            arguments.update(SubnetIds=inputs.get("subnetIds", []), SecurityGroupIds=inputs.get("securityGroupIds", []),
                             PrivateDnsEnabled=bool(inputs.get("privateDnsEnabled")))
            dns = inputs.get("dnsOptions") or {}
            if "privateDnsOnlyForInboundResolverEndpoint" in dns:
                arguments["DnsOptions"] = {
                    "PrivateDnsOnlyForInboundResolverEndpoint": dns["privateDnsOnlyForInboundResolverEndpoint"]}
        endpoint = ec2.create_vpc_endpoint(**arguments)["VpcEndpoint"]
        note = ("VPC endpoints: created in the stand-in VPC, but the runtimes here reach the stand-in account on "
                "loopback; private DNS and the instances' narrowed HTTPS egress act only on AWS")
        if note not in self.skipped:
            self.skipped.append(note)
        endpoint_id = endpoint["VpcEndpointId"]
        outputs: dict[str, Any] = {
            "id": endpoint_id, "arn": f"arn:aws:ec2:{self.aws.region}:{self._account()}:vpc-endpoint/{endpoint_id}",
            "dnsEntries": [{"dnsName": e["DnsName"], "hostedZoneId": e["HostedZoneId"]} for e in endpoint["DnsEntries"]],
        }
        if kind == "Gateway":
            # pulumi-aws reads the service's prefix list the same way: by its name, the service's.
            [prefix_list] = ec2.describe_prefix_lists(
                Filters=[{"Name": "prefix-list-name", "Values": [inputs["serviceName"]]}])["PrefixLists"]
            outputs["prefixListId"] = prefix_list["PrefixListId"]
        return outputs

    def load_balancer(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        elbv2 = self.aws.client("elbv2")
        balancer = elbv2.create_load_balancer(
            Name=name, Subnets=inputs["subnets"], SecurityGroups=inputs.get("securityGroups", []),
            Scheme="internal" if inputs.get("internal") else "internet-facing",
            Type=inputs.get("loadBalancerType", "application"), Tags=_tags(inputs.get("tags")),
        )["LoadBalancers"][0]
        attributes = {"idle_timeout.timeout_seconds": inputs.get("idleTimeout"),
                      "routing.http.drop_invalid_header_fields.enabled": inputs.get("dropInvalidHeaderFields")}
        elbv2.modify_load_balancer_attributes(LoadBalancerArn=balancer["LoadBalancerArn"], Attributes=[
            {"Key": k, "Value": str(v).lower()} for k, v in attributes.items() if v is not None])
        arn = balancer["LoadBalancerArn"]
        return {"id": arn, "arn": arn, "name": name, "dnsName": balancer["DNSName"],
                "arnSuffix": arn.partition(":loadbalancer/")[2], "zoneId": balancer.get("CanonicalHostedZoneId")}

    def target_group(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        elbv2 = self.aws.client("elbv2")
        arguments: dict[str, Any] = {"Name": name, "TargetType": inputs.get("targetType", "instance"),
                                     "Tags": _tags(inputs.get("tags"))}
        if arguments["TargetType"] != "lambda":
            check = inputs.get("healthCheck", {})
            arguments.update(
                Protocol=inputs["protocol"], Port=int(inputs["port"]), VpcId=inputs["vpcId"],
                HealthCheckEnabled=check.get("enabled", True), HealthCheckPath=check.get("path", "/"),
                HealthCheckProtocol=check.get("protocol", "HTTP"), HealthCheckPort=str(check.get("port", "traffic-port")),
                HealthCheckIntervalSeconds=check.get("interval", 30), HealthCheckTimeoutSeconds=check.get("timeout", 5),
                HealthyThresholdCount=check.get("healthyThreshold", 5),
                UnhealthyThresholdCount=check.get("unhealthyThreshold", 2),
                Matcher={"HttpCode": check.get("matcher", "200")},
            )
        group = elbv2.create_target_group(**arguments)["TargetGroups"][0]
        attributes = {"deregistration_delay.timeout_seconds": inputs.get("deregistrationDelay"),
                      "load_balancing.algorithm.type": inputs.get("loadBalancingAlgorithmType")}
        wanted = [{"Key": k, "Value": str(v)} for k, v in attributes.items() if v is not None]
        if wanted:
            elbv2.modify_target_group_attributes(TargetGroupArn=group["TargetGroupArn"], Attributes=wanted)
        arn = group["TargetGroupArn"]
        return {"id": arn, "arn": arn, "name": name, "arnSuffix": arn.split(":", 5)[5]}

    def listener(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "LoadBalancerArn": inputs["loadBalancerArn"], "Protocol": inputs["protocol"], "Port": int(inputs["port"]),
            "DefaultActions": [_action(a) for a in inputs["defaultActions"]], "Tags": _tags(inputs.get("tags")),
        }
        if inputs.get("certificateArn"):
            arguments["Certificates"] = [{"CertificateArn": inputs["certificateArn"]}]
        if inputs.get("sslPolicy"):
            arguments["SslPolicy"] = inputs["sslPolicy"]
        arn = self.aws.client("elbv2").create_listener(**arguments)["Listeners"][0]["ListenerArn"]
        return {"id": arn, "arn": arn}

    def listener_rule(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        rule = self.aws.client("elbv2").create_rule(
            ListenerArn=inputs["listenerArn"], Priority=int(inputs["priority"]),
            Conditions=[_condition(c) for c in inputs["conditions"]], Actions=[_action(a) for a in inputs["actions"]],
        )["Rules"][0]
        return {"id": rule["RuleArn"], "arn": rule["RuleArn"]}

    def target_group_attachment(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        target = {"Id": inputs["targetId"], **({"Port": int(inputs["port"])} if inputs.get("port") else {})}
        self.aws.client("elbv2").register_targets(TargetGroupArn=inputs["targetGroupArn"], Targets=[target])
        return {"id": f"{inputs['targetGroupArn']}-{inputs['targetId']}"}

    # --- instances ---------------------------------------------------------------------
    def launch_template(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        metadata = inputs.get("metadataOptions", {})
        data: dict[str, Any] = {
            "ImageId": inputs["imageId"], "InstanceType": inputs["instanceType"], "UserData": inputs.get("userData", ""),
            "IamInstanceProfile": {"Arn": inputs["iamInstanceProfile"]["arn"]},
            "SecurityGroupIds": inputs.get("vpcSecurityGroupIds", []),
            "MetadataOptions": {"HttpEndpoint": metadata.get("httpEndpoint", "enabled"),
                                "HttpTokens": metadata.get("httpTokens", "optional"),
                                "HttpPutResponseHopLimit": int(metadata.get("httpPutResponseHopLimit", 1))},
            # The instance tags say the model and image this version starts (`kiln status` reads them).
            "TagSpecifications": [{"ResourceType": spec["resourceType"], "Tags": _tags(spec.get("tags"))}
                                  for spec in inputs.get("tagSpecifications", [])],
        }
        template = self.aws.client("ec2").create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
        created = template["LaunchTemplate"]
        return {"id": created["LaunchTemplateId"], "name": name, "latestVersion": created["LatestVersionNumber"],
                "arn": f"arn:aws:ec2:{self.aws.region}:{self._account()}:launch-template/{created['LaunchTemplateId']}"}

    def group(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        autoscaling = self.aws.client("autoscaling")
        template = inputs["launchTemplate"]
        arguments: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "LaunchTemplate": {"LaunchTemplateId": template["id"], "Version": str(template.get("version", "$Default"))},
            "MinSize": int(inputs["minSize"]), "MaxSize": int(inputs["maxSize"]),
            "VPCZoneIdentifier": ",".join(inputs.get("vpcZoneIdentifiers", [])),
            "TargetGroupARNs": inputs.get("targetGroupArns", []),
            "HealthCheckType": inputs.get("healthCheckType", "EC2"),
            "HealthCheckGracePeriod": int(inputs.get("healthCheckGracePeriod", 300)),
            "Tags": [{"Key": t["key"], "Value": t["value"], "PropagateAtLaunch": bool(t.get("propagateAtLaunch")),
                      "ResourceId": name, "ResourceType": "auto-scaling-group"} for t in inputs.get("tags", [])],
        }
        if inputs.get("desiredCapacity") is not None:
            arguments["DesiredCapacity"] = int(inputs["desiredCapacity"])
        if inputs.get("defaultInstanceWarmup") is not None:
            arguments["DefaultInstanceWarmup"] = int(inputs["defaultInstanceWarmup"])
        autoscaling.create_auto_scaling_group(**arguments)
        if pool := inputs.get("warmPool"):
            autoscaling.put_warm_pool(
                AutoScalingGroupName=name, MinSize=int(pool.get("minSize", 0)), PoolState=pool.get("poolState", "Stopped"),
                InstanceReusePolicy={"ReuseOnScaleIn": bool((pool.get("instanceReusePolicy") or {}).get("reuseOnScaleIn"))})
            self.skipped.append(
                f"warm pool of {name}: moto records it but launches no pool instances, so starting a stopped "
                "instance (and its runtime coming back at boot) shows only on AWS")
        for hook in inputs.get("initialLifecycleHooks", []):
            self.skipped.append(
                f"lifecycle hook {hook.get('name')} of {name}: moto neither holds instances in Pending:Wait nor "
                "implements CompleteLifecycleAction, so its instances go into service at once; the user data's "
                "completion after /ping shows only on AWS")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        return {"id": name, "name": name, "arn": group["AutoScalingGroupARN"]}

    # --- Glue (the inference tables) ---------------------------------------------------------
    def catalog_database(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        self.aws.client("glue").create_database(DatabaseInput={"Name": name, "Description": inputs.get("description", "")})
        account = self._account()
        return {"id": f"{account}:{name}", "name": name, "catalogId": account,
                "arn": f"arn:aws:glue:{self.aws.region}:{account}:database/{name}"}

    def catalog_table(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        storage = inputs["storageDescriptor"]

        def columns(items: list[dict[str, Any]]) -> list[dict[str, str]]:
            return [{"Name": c["name"], "Type": c["type"], "Comment": c.get("comment", "")} for c in items]

        database = inputs["databaseName"]
        self.aws.client("glue").create_table(DatabaseName=database, TableInput={
            "Name": name, "Description": inputs.get("description", ""), "TableType": inputs.get("tableType", ""),
            "Parameters": inputs.get("parameters", {}), "PartitionKeys": columns(inputs.get("partitionKeys", [])),
            "StorageDescriptor": {
                "Location": storage["location"], "InputFormat": storage["inputFormat"],
                "OutputFormat": storage["outputFormat"], "Columns": columns(storage["columns"]),
                "SerdeInfo": {"SerializationLibrary": storage["serDeInfo"]["serializationLibrary"]},
            },
        })
        account = self._account()
        return {"id": f"{account}:{database}:{name}", "name": name, "catalogId": account,
                "arn": f"arn:aws:glue:{self.aws.region}:{account}:table/{database}/{name}"}

    # --- Kiln's own resources -------------------------------------------------------------
    def model_artifact(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The upload resource's own code, as `pulumi up` runs it, writing to the stand-in S3."""
        provider = ModelArtifactProvider(client_factory=lambda service, region: self.aws.client(service))
        return dict(provider.create(inputs).outs)

    def _account(self) -> str:
        return self.aws.client("sts").get_caller_identity()["Account"]


class StandInMocks(KilnMocks):
    """Engine mocks in update mode whose provider is the stand-in account for the serving path."""

    def __init__(self, aws: LocalAws) -> None:
        super().__init__(preview=False, region=aws.region)
        self.provider = StandInProvider(aws)

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        create = self.provider.creates.get(args.typ) if args.custom else None
        if create is None:
            return super().new_resource(args)
        inputs = plain_values(dict(args.inputs))
        try:
            created = create(physical_name(args.typ, args.name, inputs), inputs)
        except Exception as error:  # boto3's ClientError, a shape the rehearsal cannot create, a failed upload
            raise RehearsalDeployError(f"{args.typ} {args.name}", str(error)) from error
        outputs = {**computed_outputs(args.typ, args.name, args.inputs, self.region), **dict(args.inputs), **created}
        return outputs.pop("id"), outputs
