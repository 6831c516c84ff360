{#- The IPS-25 fidelity bands (of 125: 115-125 exemplary, 100-114 good, 74-99 fair, 73 or less not IPS)
    applied as shares of the maximum (92%, 80%, 59.2%), because the Dutch scales have 26 (IPS-A) and
    25 (IPS-O) scored items. Compared in whole numbers (per mille) so 115 of 125 is exactly 92%. -#}
{% macro fidelity_band(total, maximum) -%}
    case
        when {{ total }} is null or {{ maximum }} is null or {{ maximum }} = 0 then null
        when 1000 * {{ total }} >= 920 * {{ maximum }} then 'exemplary'
        when 1000 * {{ total }} >= 800 * {{ maximum }} then 'good'
        when 1000 * {{ total }} >= 592 * {{ maximum }} then 'fair'
        else 'not IPS'
    end
{%- endmacro %}
