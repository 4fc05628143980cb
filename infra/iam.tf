# Least privilege for the control plane: exactly the EC2 actions its ec2 provider calls
# (control_plane/providers/ec2.py: EC2_ACTIONS, checked by tests/test_infra.py), limited to
# instances carrying this cluster's tag wherever IAM can say so.

data "aws_iam_policy_document" "assume_from_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "control_plane" {
  statement {
    sid     = "LaunchOnlyTaggedInstancesAndVolumes"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:volume/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.cluster_tag_key}"
      values   = [var.cluster]
    }
  }

  statement {
    sid     = "LaunchFromTheAgentTemplateNetworkAndImage"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [
        aws_launch_template.agent.arn,
        aws_security_group.agent.arn,
        "${local.ec2_arn}:network-interface/*",
        "arn:${local.partition}:ec2:${var.region}::image/${var.agent_ami_id}",
      ],
      [for subnet in var.agent_subnet_ids : "${local.ec2_arn}:subnet/${subnet}"],
    )
  }

  statement {
    sid       = "TagOnlyAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["${local.ec2_arn}:instance/*", "${local.ec2_arn}:volume/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  statement {
    sid       = "TerminateOnlyThisClustersInstances"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.cluster_tag_key}"
      values   = [var.cluster]
    }
  }

  statement {
    sid       = "ListInstancesToReconcile"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }

  statement {
    sid       = "PassTheAgentRoleToAgents"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.agent.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  statement {
    sid       = "EncryptAgentVolumesThroughEC2"
    actions   = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext"]
    resources = [aws_kms_key.paddler.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ec2.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "control_plane" {
  name               = "paddler-${var.cluster}-control-plane"
  description        = "Paddler control plane: launches, lists and terminates this cluster's agents"
  assume_role_policy = data.aws_iam_policy_document.assume_from_ec2.json
}

resource "aws_iam_role_policy" "control_plane" {
  name   = "paddler-${var.cluster}-scale-agents"
  role   = aws_iam_role.control_plane.id
  policy = data.aws_iam_policy_document.control_plane.json
}

resource "aws_iam_instance_profile" "control_plane" {
  name = "paddler-${var.cluster}-control-plane"
  role = aws_iam_role.control_plane.name
}

# Agents read models from the bucket, nothing else.

data "aws_iam_policy_document" "agent" {
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.models.arn}/*"]
  }

  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.models.arn]
  }

  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.paddler.arn]
  }
}

resource "aws_iam_role" "agent" {
  name               = "paddler-${var.cluster}-agent"
  description        = "Paddler agents: read models"
  assume_role_policy = data.aws_iam_policy_document.assume_from_ec2.json
}

resource "aws_iam_role_policy" "agent" {
  name   = "paddler-${var.cluster}-read-models"
  role   = aws_iam_role.agent.id
  policy = data.aws_iam_policy_document.agent.json
}

resource "aws_iam_instance_profile" "agent" {
  name = "paddler-${var.cluster}-agent"
  role = aws_iam_role.agent.name
}
