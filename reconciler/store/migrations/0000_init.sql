CREATE TABLE `audit_log` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` integer NOT NULL,
	`actor` text NOT NULL,
	`action` text NOT NULL,
	`target` text NOT NULL,
	`details` text
);
--> statement-breakpoint
CREATE INDEX `audit_log_at` ON `audit_log` (`at`);--> statement-breakpoint
CREATE TABLE `bootstrap_runs` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`node_id` text NOT NULL,
	`instance` text,
	`address` text NOT NULL,
	`user` text NOT NULL,
	`state` text NOT NULL,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`host_key_fingerprint` text,
	`error` text,
	`steps` text DEFAULT '[]' NOT NULL
);
--> statement-breakpoint
CREATE INDEX `bootstrap_runs_node` ON `bootstrap_runs` (`node_id`);--> statement-breakpoint
CREATE TABLE `bootstrap_tokens` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`node_id` text NOT NULL,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer
);
--> statement-breakpoint
CREATE INDEX `bootstrap_tokens_node` ON `bootstrap_tokens` (`node_id`);--> statement-breakpoint
CREATE TABLE `breakers` (
	`scope` text PRIMARY KEY NOT NULL,
	`tripped_at` integer NOT NULL,
	`reason` text NOT NULL,
	`reset_at` integer,
	`reset_by` text
);
--> statement-breakpoint
CREATE TABLE `gpus` (
	`node_id` text NOT NULL,
	`gpu_index` integer NOT NULL,
	`uuid` text NOT NULL,
	`pci_bus_id` text NOT NULL,
	`name` text NOT NULL,
	`memory_total_bytes` integer,
	`last_snapshot` text,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`node_id`, `gpu_index`),
	FOREIGN KEY (`node_id`) REFERENCES `nodes`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `health_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`node_id` text NOT NULL,
	`seq` integer NOT NULL,
	`boot_id` text NOT NULL,
	`time` integer NOT NULL,
	`received_at` integer NOT NULL,
	`check` text NOT NULL,
	`code` text,
	`severity` text NOT NULL,
	`action` text NOT NULL,
	`gpu_index` integer,
	`gpu_uuid` text,
	`gpu_pci_bus_id` text,
	`message` text NOT NULL,
	`count` integer DEFAULT 1 NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `health_events_node_seq` ON `health_events` (`node_id`,`seq`);--> statement-breakpoint
CREATE INDEX `health_events_time` ON `health_events` (`time`);--> statement-breakpoint
CREATE TABLE `host_keys` (
	`instance` text PRIMARY KEY NOT NULL,
	`node_id` text NOT NULL,
	`address` text NOT NULL,
	`fingerprint` text NOT NULL,
	`source` text NOT NULL,
	`first_seen_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `incidents` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`node_id` text NOT NULL,
	`pool` text,
	`reason` text NOT NULL,
	`fault_at` integer NOT NULL,
	`opened_at` integer NOT NULL,
	`cordoned_at` integer,
	`drained_at` integer,
	`terminated_at` integer,
	`replacement_node_id` text,
	`replacement_ready_at` integer,
	`status` text NOT NULL,
	`closed_at` integer,
	`outcome` text
);
--> statement-breakpoint
CREATE INDEX `incidents_node` ON `incidents` (`node_id`);--> statement-breakpoint
CREATE INDEX `incidents_open` ON `incidents` (`closed_at`);--> statement-breakpoint
CREATE TABLE `instances` (
	`name` text PRIMARY KEY NOT NULL,
	`provider` text NOT NULL,
	`provider_id` text,
	`pool` text NOT NULL,
	`instance_type` text NOT NULL,
	`region` text,
	`state` text NOT NULL,
	`address` text,
	`operation_key` text,
	`missed_sweeps` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `instances_pool` ON `instances` (`pool`);--> statement-breakpoint
CREATE UNIQUE INDEX `instances_provider_id` ON `instances` (`provider`,`provider_id`);--> statement-breakpoint
CREATE TABLE `node_credentials` (
	`node_id` text PRIMARY KEY NOT NULL,
	`token_hash` text NOT NULL,
	`issued_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `node_credentials_token` ON `node_credentials` (`token_hash`);--> statement-breakpoint
CREATE TABLE `nodes` (
	`id` text PRIMARY KEY NOT NULL,
	`pool` text,
	`provider` text,
	`instance_type` text,
	`instance_name` text,
	`state` text NOT NULL,
	`version` integer DEFAULT 0 NOT NULL,
	`state_reason` text,
	`state_changed_at` integer NOT NULL,
	`next_action_at` integer,
	`requested_at` integer,
	`replacement_of` text,
	`hostname` text,
	`boot_id` text,
	`agent_version` text,
	`driver_version` text,
	`cuda_version` text,
	`nvml_available` integer DEFAULT false NOT NULL,
	`nvml_error` text,
	`agent_health` text,
	`registered_at` integer,
	`last_heartbeat_at` integer,
	`last_event_seq` integer DEFAULT 0 NOT NULL,
	`spool_id` text,
	`findings` text DEFAULT '[]' NOT NULL,
	`consecutive_failures` integer DEFAULT 0 NOT NULL,
	`evaluated_event_id` integer DEFAULT 0 NOT NULL,
	`verdict` text,
	`incident_id` integer,
	`cordoned_by` text,
	`attempts` integer DEFAULT 0 NOT NULL,
	`removal` text,
	`updated_at` integer NOT NULL,
	`k8s_node_name` text
);
--> statement-breakpoint
CREATE INDEX `nodes_pool_state` ON `nodes` (`pool`,`state`);--> statement-breakpoint
CREATE INDEX `nodes_next_action` ON `nodes` (`next_action_at`);--> statement-breakpoint
CREATE TABLE `operations` (
	`key` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`node_id` text,
	`pool` text,
	`state` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`payload` text,
	`result` text,
	`error` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `operations_state` ON `operations` (`state`);--> statement-breakpoint
CREATE TABLE `pools` (
	`name` text PRIMARY KEY NOT NULL,
	`source` text NOT NULL,
	`spec` text NOT NULL,
	`paused` integer DEFAULT false NOT NULL,
	`paused_reason` text,
	`last_scale_at` integer,
	`last_scale_direction` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
