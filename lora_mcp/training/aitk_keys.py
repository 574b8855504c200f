"""Keys AI-Toolkit reads, per config section: the allow-list every generated config is checked against.

AI-Toolkit's config classes read their settings with `kwargs.get(key, default)`, so a misspelt or invented key is
silently ignored and the trainer runs with the default instead. lora-mcp never writes a key outside these sets.

Derived by reading ostris/ai-toolkit at AITK_COMMIT: the `kwargs.get` calls of each class in
`toolkit/config_modules.py` (NetworkConfig, SaveConfig, DatasetConfig, TrainConfig, ModelConfig, SampleConfig,
SampleItem, LoggingConfig), and the `get_conf` calls of `jobs/BaseJob.py`, `jobs/ExtensionJob.py`,
`jobs/process/BaseProcess.py`, `jobs/process/BaseTrainProcess.py`, `jobs/process/BaseSDTrainProcess.py` and
`extensions_built_in/sd_trainer/DiffusionTrainer.py` (the `diffusion_trainer` process). A process-level `device` is
NOT read by the diffusion trainer (the GPU is chosen with CUDA_VISIBLE_DEVICES), so it is absent here.
`scripts/check_against_aitk.py` re-derives these sets from an AI-Toolkit checkout and reports any drift.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

AITK_COMMIT = "27a03a91f23eb1b757d5ec2e80ee3e129cfcc350"
"""The ostris/ai-toolkit commit these sets were read from (main, 2026-08-21)."""


def _keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALLOWED_KEYS: dict[str, frozenset[str]] = {
    # toolkit/job.py and jobs/BaseJob.py read the top level
    "top": _keys("job config meta"),
    # BaseJob.get_conf / ExtensionJob.get_conf
    "config": _keys("name process device"),
    # BaseProcess, BaseTrainProcess, BaseSDTrainProcess, DiffusionTrainer (get_conf / config.get)
    "process": _keys(
        "adapter datasets decorator do_lorm embedding first_sample guidance log_dir logging lorm_extract_mode "
        "lorm_extract_mode_param model name network performance_log_every sample save sqlite_db_path torch_profiler "
        "train training_folder training_seed trigger_word type"
    ),
    # toolkit/config_modules.py NetworkConfig
    "network": _keys(
        "all_layers alpha conv conv_alpha dropout layer_offloading linear linear_alpha lokr_factor lokr_full_rank "
        "lorm network_kwargs old_lokr_format pretrained_lora_path rank split_multistage_loras transformer_only type"
    ),
    # toolkit/config_modules.py SaveConfig
    "save": _keys("dtype hf_private hf_repo_id max_step_saves_to_keep push_to_hub save_every save_format"),
    # toolkit/config_modules.py DatasetConfig
    "datasets[]": _keys(
        "alpha_mask audio_normalize audio_preserve_pitch augmentations augments auto_frame_count batch_size "
        "bucket_tolerance buckets cache_clip_vision_to_disk cache_latents cache_latents_num_workers "
        "cache_latents_to_disk cache_tensors_to_disk cache_text_embeddings caption_dropout_rate caption_ext "
        "caption_type clip_image_augmentations clip_image_from_same_folder clip_image_path "
        "clip_image_shuffle_augmentations control_from_same_folder control_path control_path_1 control_path_2 "
        "control_path_3 control_transparent_color controls dataset_path debug default_caption "
        "diff_output_preservation diff_output_preservation_class do_audio do_i2v extra_values fast_image_size flip_x "
        "flip_y folder_path fps full_size_control_images guidance_type inpaint_path invert_mask is_reg keep_tokens "
        "load_image_when_caching_latents loss_multiplier mask_min_value mask_path network_weight "
        "num_controls_from_same_folder num_frames num_repeats num_workers poi prefetch_factor prior_reg random_crop "
        "random_scale random_triggers random_triggers_max replacements replay_transforms resolution scale "
        "shrink_video_to_frames shuffle_augmentations shuffle_tokens square_crop standardize_images "
        "token_dropout_rate trigger_word trim_auto_frame_count_tail type unconditional_path use_short_captions"
    ),
    # toolkit/config_modules.py TrainConfig
    "train": _keys(
        "adapter_assist_name_or_path adapter_assist_type adapter_lr adaptive_scaling_factor attention_backend "
        "audio_loss_multiplier batch_noise_correction_scale batch_size blank_prompt_preservation "
        "blank_prompt_preservation_multiplier blended_blur_noise bypass_guidance_embedding cache_text_embeddings "
        "cfg_rescale cfg_scale content_or_style correct_pred_norm correct_pred_norm_multiplier "
        "diff_output_preservation diff_output_preservation_class diff_output_preservation_multiplier "
        "differential_guidance_scale diffusion_feature_extractor_path diffusion_feature_extractor_weight "
        "disable_sampling do_batch_noise_correction do_blank_stabilization do_cfg do_differential_guidance "
        "do_fft_loss do_fft_velocity_equiv_weight do_guidance_loss do_guidance_loss_cfg_zero do_paramiter_swapping "
        "do_prior_divergence do_random_cfg do_signal_amplification do_signal_correction_noise dtype "
        "dynamic_noise_offset ema_config embedding_lr force_consistent_noise force_first_sample free_u "
        "gradient_accumulation gradient_accumulation_steps gradient_checkpointing guidance_loss_schedule "
        "guidance_loss_target img_multiplier inverted_mask_prior inverted_mask_prior_multiplier "
        "latent_feature_extractor_path latent_feature_loss_weight latent_multiplier learnable_snr_gos "
        "linear_timesteps linear_timesteps2 loss_target loss_type lr lr_scheduler lr_scheduler_params "
        "match_adapter_assist match_adapter_chance match_noise_norm max_cfg_scale max_denoising_steps max_grad_norm "
        "max_loss max_loss_debug max_negative_prompts merge_network_on_save merge_network_on_save_strength "
        "min_denoising_steps min_snr_gamma negative_prompt next_sample_timesteps noise_multiplier noise_offset "
        "noise_scheduler noisy_latent_multiplier num_train_timesteps optimal_noise_pairing_samples optimizer "
        "optimizer_params paramiter_swapping_factor pred_scaler prompt_dropout_prob prompt_saturation_chance "
        "random_noise_multiplier random_noise_shift refiner_lr reg_weight sdp short_and_long_captions "
        "short_and_long_captions_encoder_split show_turbo_outputs signal_amplification_strength "
        "signal_correction_noise_scale single_item_batching skip_first_sample snr_gamma standardize_images "
        "standardize_latents start_step steps switch_boundary_every t0_loss_target t0_velocity_equiv_weight "
        "target_noise_multiplier target_norm_std target_norm_std_value text_encoder_lr timestep_type train_refiner "
        "train_text_encoder train_turbo train_unet unconditional_prompt unet_lr unload_text_encoder validation_config "
        "weight_jitter xformers"
    ),
    # toolkit/config_modules.py ModelConfig
    "model": _keys(
        "accuracy_recovery_adapter arch assistant_lora_path attn_masking auto_memory block_compile cache_size_limit "
        "compile compile_dynamic compile_fullgraph compile_mode dtype experimental_xl extras_name_or_path "
        "ignore_if_contains in_context inference_lora_path is_auraflow is_flux is_lumina2 is_pixart is_pixart_sigma "
        "is_ssd is_v2 is_v3 is_v_pred is_vega is_xl latent_space_version layer_offloading "
        "layer_offloading_text_encoder_percent layer_offloading_transformer_percent lora_path low_vram model_kwargs "
        "model_paths name_or_path only_if_contains qtype qtype_te quantize quantize_kwargs quantize_te "
        "refiner_name_or_path refiner_start_at split_model_other_module_param_count_scale split_model_over_gpus "
        "te_device te_dtype te_name_or_path text_encoder_bits unconditional_lora_path unet_path unet_sample_size "
        "use_flux_cfg use_text_encoder_1 use_text_encoder_2 vae_device vae_dtype vae_path"
    ),
    # toolkit/config_modules.py SampleConfig
    "sample": _keys(
        "adapter_conditioning_scale do_cfg_norm extra_values format fps guidance_rescale guidance_scale height neg "
        "network_multiplier num_frames prompts refiner_start_at sample_every sample_start_step sample_steps sampler "
        "samples seed walk_seed width"
    ),
    # toolkit/config_modules.py SampleItem
    "samples[]": _keys(
        "ctrl_idx ctrl_img ctrl_img_1 ctrl_img_2 ctrl_img_3 do_cfg_norm fps guidance_scale height neg "
        "network_multiplier num_frames prompt sample_steps seed width"
    ),
    # toolkit/config_modules.py LoggingConfig
    "logging": _keys("log_every project_name run_name use_ui_logger use_wandb verbose"),
}

CHILD_SECTIONS: dict[str, dict[str, str]] = {
    "top": {"config": "config"},
    "config": {"process": "process"},
    "process": {
        "network": "network",
        "save": "save",
        "datasets": "datasets[]",
        "train": "train",
        "model": "model",
        "sample": "sample",
        "logging": "logging",
    },
    "sample": {"samples": "samples[]"},
}
"""Which allow-list applies to the value of a key; for a list, to each of its items. Other values (for example
`train.optimizer_params`, passed on to the optimizer as keyword arguments) are not checked."""


def _walk(node: Mapping[str, Any], section: str, path: str) -> Iterator[str]:
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in ALLOWED_KEYS[section]:
            yield where
            continue
        child = CHILD_SECTIONS.get(section, {}).get(key)
        if child is None:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _walk(item, child, f"{where}[{i}]")
        elif isinstance(value, Mapping):
            yield from _walk(value, child, where)


def unknown_keys(config: Mapping[str, Any]) -> list[str]:
    """Dotted paths of every key in a full AI-Toolkit config that AI-Toolkit would silently ignore."""
    return list(_walk(config, "top", ""))
