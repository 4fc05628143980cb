output "cluster" {
  description = "The control plane's ec2 provider cluster setting."
  value       = var.cluster
}

output "launch_template_name" {
  description = "The control plane's ec2 provider launch_template setting."
  value       = aws_launch_template.agent.name
}

output "agent_subnet_ids" {
  description = "Subnets the control plane may launch agents in."
  value       = var.agent_subnet_ids
}

output "control_plane_security_group_id" {
  description = "Attach to the control plane's host: clients reach the inference port, agents the management port."
  value       = aws_security_group.control_plane.id
}

output "control_plane_instance_profile" {
  description = "Instance profile for the control plane's host: launch, list and terminate this cluster's agents."
  value       = aws_iam_instance_profile.control_plane.name
}

output "agent_instance_profile" {
  description = "Instance profile the agents run with (set in the launch template)."
  value       = aws_iam_instance_profile.agent.name
}

output "model_bucket" {
  description = "Bucket for models; agents take s3://BUCKET/KEY model sources."
  value       = aws_s3_bucket.models.bucket
}

output "kms_key_arn" {
  description = "Key encrypting models, agent volumes and the database."
  value       = aws_kms_key.paddler.arn
}

output "database_endpoint" {
  description = "PostgreSQL host:port (null without create_database); the password is in Secrets Manager."
  value       = var.create_database ? aws_db_instance.paddler[0].endpoint : null
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the PostgreSQL master password (null without create_database)."
  value       = var.create_database ? aws_db_instance.paddler[0].master_user_secret[0].secret_arn : null
}
