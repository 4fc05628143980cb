# One customer-managed key for the model bucket, the agents' root volumes and the database.

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:a key policy must let the account administer the key; "*" means this key
  #checkov:skip=CKV_AWS_111:a key policy must let the account administer the key; "*" means this key
  #checkov:skip=CKV_AWS_356:in a key policy "*" is the key itself
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "EC2UsesTheKeyForAgentVolumes"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
      "kms:CreateGrant",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ec2.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "paddler" {
  description             = "Paddler ${var.cluster}: models, agent volumes, fleet database"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "paddler" {
  name          = "alias/paddler-${var.cluster}"
  target_key_id = aws_kms_key.paddler.key_id
}
