# Optional PostgreSQL for fleet state (create_database = true); the control plane connects with
# database_url = postgresql+asyncpg://… . Without it the control plane keeps SQLite on its disk.

resource "aws_security_group" "database" {
  count = var.create_database ? 1 : 0

  name        = "paddler-${var.cluster}-database"
  description = "Paddler fleet state: PostgreSQL from the control plane only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_control_plane" {
  count = var.create_database ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the control plane"
  referenced_security_group_id = aws_security_group.control_plane.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_subnet_group" "paddler" {
  count = var.create_database ? 1 : 0

  name       = "paddler-${var.cluster}"
  subnet_ids = var.database_subnet_ids
}

resource "aws_db_parameter_group" "paddler" {
  count = var.create_database ? 1 : 0

  name   = "paddler-${var.cluster}-postgres${var.postgres_version}"
  family = "postgres${var.postgres_version}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

data "aws_iam_policy_document" "assume_from_rds_monitoring" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "database_monitoring" {
  count = var.create_database ? 1 : 0

  name               = "paddler-${var.cluster}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.assume_from_rds_monitoring.json
}

resource "aws_iam_role_policy_attachment" "database_monitoring" {
  count = var.create_database ? 1 : 0

  role       = aws_iam_role.database_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "paddler" {
  count = var.create_database ? 1 : 0

  identifier     = "paddler-${var.cluster}"
  engine         = "postgres"
  engine_version = var.postgres_version
  instance_class = var.database_instance_class
  db_name        = "paddler"
  username       = "paddler"

  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.paddler.arn

  allocated_storage     = 20
  max_allocated_storage = 200
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.paddler.arn

  db_subnet_group_name   = aws_db_subnet_group.paddler[0].name
  parameter_group_name   = aws_db_parameter_group.paddler[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  publicly_accessible    = false
  multi_az               = var.database_multi_az

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  deletion_protection                 = true
  copy_tags_to_snapshot               = true
  backup_retention_period             = 7
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "paddler-${var.cluster}-final"

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.database_monitoring[0].arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.paddler.arn
  performance_insights_retention_period = 7
}
