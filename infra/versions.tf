terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      (local.cluster_tag_key) = var.cluster
      "managed-by"            = "terraform"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # The tag keys the control plane's ec2 provider sets and filters by
  # (control_plane/providers/ec2.py: CLUSTER_TAG, POOL_TAG).
  cluster_tag_key = "paddler:cluster"
  pool_tag_key    = "paddler:pool"

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  ec2_arn    = "arn:${local.partition}:ec2:${var.region}:${local.account_id}"
}
