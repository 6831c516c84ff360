{#- The metrics of marts.ips_quarterly, in column order. ips_yearly averages each of them,
    ips_quarterly_national averages them over programmes, ips_benchmark compares them and
    ips_benchmark_long lists them one per row; the seed `metrics` labels every one. -#}
{% macro ips_quarterly_metrics() -%}
    {{ return([
        'caseload', 'new_clients', 'fte', 'clients_per_fte', 'caseload_growth',
        'paid_work', 'paid_work_uwv', 'education',
        'paid_work_rate', 'paid_work_uwv_rate', 'education_rate', 'uwv_norm_rate',
        'paid_work_growth', 'education_growth',
        'outflow_successful', 'outflow_unsuccessful',
        'successful_outflow_rate', 'unsuccessful_outflow_rate',
        'successful_outflow_growth', 'unsuccessful_outflow_growth',
    ]) }}
{%- endmacro %}

{#- The counts of a submission: ips_quarterly_national gives their sum over programmes beside the mean. -#}
{% macro ips_quarterly_counts() -%}
    {{ return([
        'caseload', 'new_clients', 'paid_work', 'paid_work_uwv', 'education',
        'outflow_successful', 'outflow_unsuccessful',
    ]) }}
{%- endmacro %}

{#- The rate metrics whose denominator is the caseload, with their numerator: the metrics of the funnel
    plots (marts.ips_funnel). The seed metrics defines each as "<numerator> / caseload". -#}
{% macro ips_funnel_metrics() -%}
    {{ return({
        'paid_work_rate': 'paid_work',
        'paid_work_uwv_rate': 'paid_work_uwv',
        'education_rate': 'education',
        'successful_outflow_rate': 'outflow_successful',
        'unsuccessful_outflow_rate': 'outflow_unsuccessful',
    }) }}
{%- endmacro %}
