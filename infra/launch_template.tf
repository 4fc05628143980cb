# The template the control plane's ec2 provider launches agents from (RunInstances with
# LaunchTemplateName = var.launch_template_name). The provider passes its own user data, pool
# and token at each launch; the user data here is the same template with this module's defaults.

resource "aws_launch_template" "agent" {
  name                   = var.launch_template_name
  description            = "Paddler agent (cluster ${var.cluster})"
  image_id               = var.agent_ami_id
  instance_type          = var.agent_instance_type
  ebs_optimized          = true
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.agent.id]

  user_data = base64encode(templatefile("${path.module}/templates/agent-user-data.sh.tftpl", {
    paddler_package   = var.paddler_package
    control_plane_url = var.control_plane_url
    agent_token       = var.agent_token
    pool              = var.default_pool
    model             = var.default_model
    slots             = var.agent_slots
  }))

  iam_instance_profile {
    arn = aws_iam_instance_profile.agent.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = var.agent_root_device_name

    ebs {
      volume_size           = var.agent_root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.paddler.arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags = {
      (local.cluster_tag_key) = var.cluster
      (local.pool_tag_key)    = var.default_pool
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags = {
      (local.cluster_tag_key) = var.cluster
      (local.pool_tag_key)    = var.default_pool
    }
  }
}
