{#- The metrics of marts.ips_quarterly, in column order. ips_yearly averages each of them,
    ips_quarterly_national averages them over programmes and ips_benchmark compares them. -#}
{% macro ips_quarterly_metrics() -%}
    {{ return([
        'caseload', 'new_clients', 'fte', 'clients_per_fte', 'caseload_growth',
        'paid_work', 'paid_work_rate', 'paid_work_uwv_rate', 'education_rate', 'uwv_norm_rate',
        'paid_work_growth', 'education_growth',
        'successful_outflow_rate', 'unsuccessful_outflow_rate',
        'successful_outflow_growth', 'unsuccessful_outflow_growth',
    ]) }}
{%- endmacro %}
