variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-east-1"
}

variable "cluster" {
  description = "Cluster name: the value of the paddler:cluster tag on everything the control plane launches, and the scope of its IAM permissions."
  type        = string
  default     = "paddler"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.cluster))
    error_message = "cluster: 1 to 32 lowercase letters, digits or dashes."
  }
}

variable "vpc_id" {
  description = "VPC holding the control plane, the agents and the optional database."
  type        = string
}

variable "agent_subnet_ids" {
  description = "Private subnets the agents may be launched in (the control plane picks one per launch)."
  type        = list(string)
}

variable "database_subnet_ids" {
  description = "At least two private subnets in different availability zones for PostgreSQL (only with create_database)."
  type        = list(string)
  default     = []
}

variable "private_route_table_ids" {
  description = "Route tables of the agent subnets: the S3 gateway endpoint is added to them, so agents fetch models without internet access."
  type        = list(string)
  default     = []
}

variable "client_cidr_blocks" {
  description = "Networks allowed to call the OpenAI-compatible inference port."
  type        = list(string)
}

variable "management_port" {
  description = "Control plane's management port (agent websocket, management API)."
  type        = number
  default     = 8060
}

variable "inference_port" {
  description = "Control plane's public OpenAI-compatible port."
  type        = number
  default     = 8061
}

variable "launch_template_name" {
  description = "Name of the agent launch template; the ec2 provider's default is paddler-agent."
  type        = string
  default     = "paddler-agent"
}

variable "agent_ami_id" {
  description = "Image for agents, with Python and paddler already installed (the boot script installs it only when missing)."
  type        = string
}

variable "agent_instance_type" {
  description = "Instance type for agents."
  type        = string
  default     = "g5.xlarge"
}

variable "agent_root_device_name" {
  description = "Root device name of the agent image."
  type        = string
  default     = "/dev/xvda"
}

variable "agent_root_volume_gb" {
  description = "Size of the agents' encrypted root volume (models are cached there)."
  type        = number
  default     = 100
}

variable "control_plane_url" {
  description = "Management address agents dial, e.g. http://10.0.1.10:8060. The control plane passes its own at each launch; this is the launch template's default."
  type        = string
  default     = "http://paddler-control-plane.internal:8060"
}

variable "agent_token" {
  description = "Agent token baked into the launch template's default user data. Leave empty: the control plane passes the real token at each launch."
  type        = string
  default     = ""
  sensitive   = true
}

variable "default_pool" {
  description = "Pool for agents started straight from the launch template."
  type        = string
  default     = "default"
}

variable "default_model" {
  description = "Model source for agents started straight from the launch template (path, https:// or s3:// URL)."
  type        = string
  default     = ""
}

variable "agent_slots" {
  description = "Slots per agent for agents started straight from the launch template."
  type        = number
  default     = 4
}

variable "paddler_package" {
  description = "pip requirement installed at boot only when the image lacks paddler."
  type        = string
  default     = "paddler"
}

variable "model_bucket_name" {
  description = "Name of the private model bucket (globally unique)."
  type        = string
}

variable "noncurrent_model_days" {
  description = "Days an overwritten model version is kept before it expires."
  type        = number
  default     = 30
}

variable "create_database" {
  description = "Create a PostgreSQL instance for fleet state (otherwise the control plane uses SQLite on its own disk)."
  type        = bool
  default     = false
}

variable "database_instance_class" {
  description = "RDS instance class for PostgreSQL."
  type        = string
  default     = "db.t4g.small"
}

variable "database_multi_az" {
  description = "Run PostgreSQL in two availability zones."
  type        = bool
  default     = true
}

variable "postgres_version" {
  description = "PostgreSQL major version."
  type        = string
  default     = "16"
}
